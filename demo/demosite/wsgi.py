"""WSGI entry point: ``gunicorn demosite.wsgi`` (run from the demo/ folder)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demosite.settings")

application = get_wsgi_application()
