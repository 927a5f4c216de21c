"""A scriptable origin for cache tests: per-path answers, request counts, a switch to fail.

Real Gunicorn + Django cover the Django behaviours (tests/e2e/test_cache_django.py); the
RFC corners need exact control of each response's fields, which this gives: a threaded
``http.server`` on an ephemeral loopback port, HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.server import config


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    """Seconds to wait before answering (to make misses overlap)."""
    pieces: int = 1
    """Send the body in this many pieces ..."""
    piece_delay: float = 0.0
    """... this many seconds apart (a slow upstream, to act in the middle of a body)."""


Script = Callable[["Request"], Answer]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class Origin:
    """``origin.route("/p", lambda request: Answer(...))``; ``origin.count["/p"]``."""

    def __init__(self) -> None:
        self.routes: dict[str, Script] = {}
        self.count: Counter[str] = Counter()
        self.seen: list[Request] = []
        self.failing = False
        """Answer every request 503 (an origin that is down but still accepting)."""
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                with origin._lock:
                    origin.count[self.path] += 1
                    origin.seen.append(request)
                script = origin.routes.get(self.path.split("?")[0])
                answer = Answer(404, body=b"no such path\n")
                if origin.failing:
                    answer = Answer(503, body=b"down\n")
                elif script is not None:
                    answer = script(request)
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                if answer.status not in (204, 304):
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD" and answer.status not in (204, 304):
                    body = answer.body
                    size = -(-len(body) // answer.pieces) if body else 0
                    for start in range(0, len(body), size or 1):
                        if start and answer.piece_delay:
                            time.sleep(answer.piece_delay)
                        self.wfile.write(body[start : start + size])
                        self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Origin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, path: str, script: Script) -> None:
        self.routes[path] = script

    def fixed(self, path: str, body: bytes, *headers: tuple[str, str], status: int = 200) -> None:
        """Always the same answer; the body may differ per request only through ``script``."""
        self.routes[path] = lambda request: Answer(status, list(headers), body)


def cache_config(
    origin: Origin, store: Path | None, *, access: str = "off", **server: object
) -> str:
    """A config proxying everything to ``origin``, with the cache in ``store`` (no
    ``[cache]`` section when it is None), the access log to ``access``, and ``server``
    settings for :func:`tests.support.server.config`."""
    cache = f'[cache]\nenabled = true\npath = "{store}"\n' if store is not None else ""
    return config(
        f"""
{cache}
[log]
access = "{access}"

[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"

[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        **server,
    )
