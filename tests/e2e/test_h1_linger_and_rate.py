"""HTTP/1.1: lingering close (no RST eats owed responses) and ``body_min_rate``."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from bext.http.message import Request, Response
from bext.worker import h1_connection
from bext.worker.context import Timeouts
from tests.conftest import ENGINES
from tests.e2e.test_h1_connection import echo
from tests.support.inproc import serve
from tests.support.rawhttp import RawConnection

pytestmark = pytest.mark.parametrize("engine", ENGINES)


def hello(request: Request) -> Response:
    return Response(200, [(b"Content-Type", b"text/plain")], b"hello")


def _read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, bool]:
    """Everything until EOF; (data, reset) where reset says the kernel sent RST."""
    data = b""
    deadline = time.monotonic() + limit
    sock.settimeout(limit)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, False
        data += chunk
    raise AssertionError("the connection was never closed")


def test_pipelined_requests_past_max_keepalive_all_get_their_responses(engine: str) -> None:
    """300 pipelined requests, 100 allowed per connection: exactly 100 responses arrive, the
    last with ``Connection: close``, and the close is a FIN, not a RST.

    The client keeps sending after the server has closed and reads slowly (a small receive
    buffer), so without lingering the kernel answers the late requests with a RST, which
    throws away the responses still waiting in the client's buffer.
    """
    timeouts = Timeouts(lingering=5.0)
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    with (
        serve(hello, engine, timeouts=timeouts, max_keepalive_requests=100) as port,
        socket.socket() as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request * 150)
        time.sleep(0.3)  # the server answers 100 and closes
        with contextlib.suppress(OSError):
            sock.sendall(request * 150)  # the client did not notice yet
        time.sleep(0.3)
        data, reset = _read_until_closed(sock)
    assert not reset
    assert data.count(b"HTTP/1.1 200 OK") == 100
    assert data.count(b"Connection: close") == 1 and data.endswith(b"hello")


def test_refused_upload_is_answered_not_reset(engine: str) -> None:
    """A 413 while the client is still sending: the client reads the 413 (no RST)."""
    from bext.protocol.events import ParserLimits

    timeouts = Timeouts(lingering=5.0)
    with (
        serve(echo, engine, limits=ParserLimits(max_body_size=1000), timeouts=timeouts) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n")
        sock.settimeout(10)
        sent = 0
        try:
            while sent < 4_000_000:  # keep sending after the server has refused it
                sent += sock.send(b"x" * 65536)
        except (BlockingIOError, TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        data, reset = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413"), (data[:80], reset)


def test_a_body_slower_than_body_min_rate_gets_408(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1_connection, "BODY_RATE_WINDOW", 1.0)
    timeouts = Timeouts(body=30, body_min_rate=1000)
    with serve(echo, engine, timeouts=timeouts) as port, RawConnection(port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        for _ in range(20):  # 5 bytes/s: each piece well within body_timeout
            if _readable(conn.sock):
                break  # answered
            conn.send(b"x")
            time.sleep(0.2)
        r = conn.read_response()
        assert r.status == 408 and b"too slow" in r.body
        assert time.monotonic() - started < 4


def test_a_body_at_a_decent_rate_is_not_cut_off(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1_connection, "BODY_RATE_WINDOW", 0.5)
    timeouts = Timeouts(body=30, body_min_rate=1000)
    with serve(echo, engine, timeouts=timeouts) as port, RawConnection(port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(15):  # 200 bytes every 0.1 s: 2 KB/s for 1.5 s
            conn.send(b"y" * 200)
            time.sleep(0.1)
        r = conn.read_response()
        assert r.status == 200 and len(r.body) == 3000


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])
