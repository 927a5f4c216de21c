"""Test setup for django-bext: plain pytest, Django configured by hand.

Run from the repository root with:
    .venv/bin/python -m pytest integrations/django-bext/tests
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # django_bext without installing it
sys.path.insert(0, str(HERE))  # bext_testapp

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-bext-tests",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django_bext.apps.DjangoBextConfig",
            "bext_testapp",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        BEXT_AUTO_INVALIDATE=["bext_testapp.Product", "bext_testapp.Category"],
        BEXT_TIMEOUT=2,
    )
    django.setup()

urlpatterns: list[object] = []


@pytest.fixture(scope="session", autouse=True)
def _schema():
    from django.apps import apps
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in apps.get_app_config("bext_testapp").get_models():
            editor.create_model(model)
    yield


class Recorder:
    """A tiny stand-in for bext's admin endpoint that records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.status = 200
        self.body = b'{"ok": true, "invalidated": 0}'
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                with recorder.lock:
                    recorder.requests.append(
                        {
                            "method": "POST",
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "json": data,
                        }
                    )
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(recorder.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(recorder.body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 64
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bext(settings_override):
    rec = Recorder()
    settings_override(BEXT_ADMIN_URL=rec.url, BEXT_ADMIN_TOKEN=None)
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture
def settings_override():
    """Call with keyword settings; everything is restored after the test."""
    from django.test.utils import override_settings

    active: list[override_settings] = []

    def apply(**kwargs: object) -> None:
        o = override_settings(**kwargs)
        o.enable()
        active.append(o)

    yield apply
    for o in reversed(active):
        o.disable()


@pytest.fixture
def closed_port_url():
    """An http URL on loopback where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def blackhole_url():
    """A listening socket that never accepts nor answers (forces a timeout)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()
