"""The demo's additions to the starter's settings (imported last by demosite/settings.py).

The demo is ``bext new demosite`` with the example app ``shop`` added (see demo/build.py):
its views exercise what bext must relay faithfully (streaming, server-sent events, large
uploads and downloads, slow answers, forms with CSRF, WebSockets under Uvicorn).
"""

from __future__ import annotations

from .settings import INSTALLED_APPS

INSTALLED_APPS.append("shop")
ROOT_URLCONF = "shop.urls"  # shop's pages, then the starter's (admin/)
