"""Django settings for the benchmark's cache-hit backend (bench only; the demo is unchanged).

The demo site's settings (``demosite.settings`` of the project demo/build.py builds, with
the demo's ``settings_local``) with one change: ``ROOT_URLCONF`` is
:mod:`cache_urls`, the demo's URLs plus one page at ``BENCH_CACHED_PAGE_PATH`` that is the
demo's index page (``/``, the template page of the proxy-django-page scenario) sent with
``Cache-Control: public, max-age=BENCH_CACHED_PAGE_MAX_AGE``: a page a shared cache may
store.

Used by ``bench/backends.py:gunicorn_cached_page`` as
``DJANGO_SETTINGS_MODULE=cache_settings gunicorn --pythonpath bench ... demosite.wsgi`` run
in the built demo's folder (Gunicorn puts it on ``sys.path``).
"""

from __future__ import annotations

import os

from demosite.settings import *  # noqa: F403

ROOT_URLCONF = "cache_urls"

BENCH_CACHED_PAGE_PATH = os.environ["BENCH_CACHED_PAGE_PATH"].lstrip("/")
BENCH_CACHED_PAGE_MAX_AGE = int(os.environ["BENCH_CACHED_PAGE_MAX_AGE"])
