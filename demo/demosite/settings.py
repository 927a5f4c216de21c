"""Settings for the bext demo site.

The site runs behind bext: Gunicorn or Uvicorn listens on 127.0.0.1 only, bext faces the
clients, serves ``/static/**`` and ``/media/**`` from ``STATIC_ROOT`` / ``MEDIA_ROOT`` and
proxies the rest here with ``X-Forwarded-*`` headers.

Environment variables (all optional; the defaults are safe for a local demo):

``DJANGO_SECRET_KEY``            signing key (a fixed demo key otherwise: never use it in
                                 production)
``DJANGO_DEBUG``                 ``1``/``true``/``yes``/``on`` turns DEBUG on (off by default)
``DJANGO_ALLOWED_HOSTS``         comma-separated (default ``127.0.0.1,localhost,[::1]``)
``DJANGO_CSRF_TRUSTED_ORIGINS``  comma-separated origins, e.g. ``https://demo.example.com``
``DEMO_DB_PATH``                 the SQLite file (default ``demo/db.sqlite3``)
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-bext-demo-key-do-not-use-in-production"
)
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "shop",
]

MIDDLEWARE = [
    # First: answers /health before host validation, sessions or the database.
    "shop.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demosite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "demosite.wsgi.application"
ASGI_APPLICATION = "demosite.asgi.application"

# SQLite in WAL mode with IMMEDIATE transactions and a generous busy timeout, so that
# several Gunicorn workers/threads writing sessions at once wait instead of failing with
# "database is locked".
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static and media files are served by bext (render = "static"), never by Django.
# `manage.py collectstatic` must run before the site starts: with the manifest storage
# `{% static %}` needs staticfiles/staticfiles.json to name the hashed files.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# bext terminates TLS and sets X-Forwarded-Proto / X-Forwarded-Host on every proxied
# request (overwriting whatever the client sent), so both are safe to trust here: the app
# server only listens on 127.0.0.1.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True

# Uploads: form fields are limited to 2.5 MiB in memory; uploaded files larger than
# 2.5 MiB go to a temporary file on disk, so a 100 MB upload never sits in memory.
# (/upload itself hashes as the data arrives and stores nothing, see shop/uploads.py.)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
