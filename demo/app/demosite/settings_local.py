"""The demo's additions to the starter's settings (imported last by demosite/settings.py).

The demo is ``bext new demosite`` with the example app ``shop`` added (see demo/build.py):
its views exercise what bext must relay faithfully (streaming, server-sent events, large
uploads and downloads, slow answers, forms with CSRF, WebSockets under Uvicorn) and what
its response cache keeps (``/products/`` and friends, see shop/views.py).

django-bext (integrations/django-bext) tags the cached pages and purges them: saving or
deleting a ``shop.Product`` sends ``POST {BEXT_ADMIN_URL}/__bext/cache/invalidate`` after
the commit. ``BEXT_ADMIN_URL`` comes from the environment (scripts/demo.sh sets it to
bext's port; the tests to their own master's); ``BEXT_ADMIN_TOKEN`` too, when bext's
``[admin] token`` is set (loopback peers need none).
"""

from __future__ import annotations

import os

from .settings import INSTALLED_APPS

INSTALLED_APPS.append("shop")
INSTALLED_APPS.append("django_bext")
ROOT_URLCONF = "shop.urls"  # shop's pages, then the starter's (admin/)

BEXT_ADMIN_URL = os.environ.get("BEXT_ADMIN_URL", "http://127.0.0.1:3000")
BEXT_ADMIN_TOKEN = os.environ.get("BEXT_ADMIN_TOKEN") or None
BEXT_AUTO_INVALIDATE = ["shop.Product"]
