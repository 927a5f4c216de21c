"""Django settings for the benchmark's WhiteNoise target (bench only; the demo is unchanged).

The demo site's settings (``demosite.settings`` of the project demo/build.py builds) plus
WhiteNoise, as its documentation says to add it: ``whitenoise.middleware.WhiteNoiseMiddleware``
right after Django's ``SecurityMiddleware``. ``WHITENOISE_ROOT`` comes from
``BENCH_WHITENOISE_ROOT``: the benchmark's document root, served at ``/``
(``/static-1k/1k.bin`` is ``$BENCH_WHITENOISE_ROOT/static-1k/1k.bin``). Everything else is
WhiteNoise's default for ``DEBUG = False`` (no autorefresh: the files are indexed once when
the app loads; ``Cache-Control: max-age=60, public``).

Used by ``bench/backends.py:gunicorn_whitenoise`` as
``DJANGO_SETTINGS_MODULE=whitenoise_settings gunicorn --pythonpath bench ... demosite.wsgi``
run in the built demo's folder (Gunicorn puts it on ``sys.path``).
"""

from __future__ import annotations

import os

from demosite.settings import *  # noqa: F403
from demosite.settings import MIDDLEWARE as _DEMO_MIDDLEWARE

_SECURITY = "django.middleware.security.SecurityMiddleware"
_WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"

if _SECURITY not in _DEMO_MIDDLEWARE:
    raise RuntimeError(f"demo settings: {_SECURITY} not in MIDDLEWARE, cannot place WhiteNoise")
_at = _DEMO_MIDDLEWARE.index(_SECURITY) + 1
MIDDLEWARE = [*_DEMO_MIDDLEWARE[:_at], _WHITENOISE, *_DEMO_MIDDLEWARE[_at:]]

WHITENOISE_ROOT = os.environ["BENCH_WHITENOISE_ROOT"]
