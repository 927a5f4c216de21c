"""Limits, timeouts and malformed input against a real master, for both engines."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ENGINES
from tests.support.rawhttp import RawConnection, exchange
from tests.support.server import BextProcess, config

ROUTES = """
[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "ok" }
"""

Start = Callable[..., BextProcess]

MALFORMED: list[tuple[str, bytes, int]] = [
    (
        "cl+te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "two different CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("negative CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF in header", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("ctl in name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: a\r\n\r\n", 400),
    ("bad method chars", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # A valid but unknown token method (FROB) is forwarded since issue 14 (RFC 9110 §9.1,
    # as nginx): not malformed. A lower-case one still is.
    ("lower-case method", b"frob / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (
        "bad chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "chunk missing CRLF",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX0\r\n\r\n",
        400,
    ),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("HTTP/2.0 version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ("dot-dot above root", b"GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("encoded NUL in path", b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("overlong utf-8 path", b"GET /%c0%ae%c0%ae/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "expect other",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na",
        417,
    ),
]


# Well-framed requests with a hostile path: refused, but the connection stays usable.
PATH_LEVEL = {"dot-dot above root", "encoded NUL in path", "overlong utf-8 path"}


@pytest.mark.parametrize("engine", ENGINES)
def test_malformed_corpus_gets_4xx_and_worker_lives(start_bext: Start, engine: str) -> None:
    server = start_bext(config(ROUTES, workers=1, http1_engine=engine))
    workers = server.worker_pids()
    for name, data, status in MALFORMED:
        with RawConnection(server.port) as conn:
            conn.send(data)
            response = conn.read_response()
            assert response.status == status, name
            if name in PATH_LEVEL:
                conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert conn.read_response().status == 200, name
            else:
                assert response.header("connection") == "close", name
                assert conn.is_closed(), name
        assert exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").status == 200, name
    assert server.worker_pids() == workers


@pytest.mark.parametrize("engine", ENGINES)
def test_size_limits(start_bext: Start, engine: str) -> None:
    server = start_bext(
        config(
            ROUTES,
            workers=1,
            http1_engine=engine,
            max_uri_length=1024,
            max_header_size="4KB",
            max_headers=20,
            max_body_size="1KB",
        )
    )
    port = server.port
    assert exchange(port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n").status == 414
    many = b"".join(b"X-%d: v\r\n" % i for i in range(25))
    assert exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n").status == 431
    big = b"X-Big: " + b"v" * 5000 + b"\r\n"
    assert exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n").status == 431
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n"
    assert exchange(port, post).status == 413
    ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000
    assert exchange(port, ok).status == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_slowloris_gets_408_and_others_are_served(start_bext: Start, engine: str) -> None:
    server = start_bext(config(ROUTES, workers=1, http1_engine=engine, header_timeout="1s"))
    with RawConnection(server.port, timeout=10) as slow:
        started = time.monotonic()
        slow.send(b"GET / HTTP/1.1\r\n")
        for i in range(4):  # one header line every 0.3 s: never completes in time
            time.sleep(0.3)
            try:
                slow.send(b"X-%d: trickle\r\n" % i)
            except OSError:
                break
            # meanwhile a normal client is served promptly
            assert httpx.get(server.base_url + "/", timeout=2).status_code == 200
        response = slow.read_response()
        assert response.status == 408
        assert 0.9 < time.monotonic() - started < 4
        assert slow.is_closed()


def test_idle_connection_without_request_is_closed(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1, header_timeout="1s"))
    with RawConnection(server.port, timeout=10) as conn:
        assert conn.is_closed(4)  # 408 written, then closed
        assert conn.buffer.startswith(b"HTTP/1.1 408")


def test_keepalive_idle_timeout(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1, keepalive_timeout="1s"))
    with RawConnection(server.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.is_closed(5)
        assert conn.buffer == b""  # closed quietly, no 408 after a completed request
        assert 0.8 < time.monotonic() - started < 3


def test_max_keepalive_requests(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1, max_keepalive_requests=3))
    with RawConnection(server.port) as conn:
        for _ in range(2):
            conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response().header("connection") is None
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().header("connection") == "close"
        assert conn.is_closed()


def test_access_log_combined_format_with_request_time(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1))
    httpx.get(
        server.base_url + "/some/path?x=1",
        headers={"User-Agent": 'ua "quoted"', "Referer": "http://r.test/"},
    )
    deadline = time.monotonic() + 5
    while "some/path" not in server.stdout() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(line for line in server.stdout().splitlines() if "some/path" in line)
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /some/path?x=1 HTTP/1.1" 200 2 "http://r.test/" "ua \\x22quoted\\x22" ' in line
    # The request time follows the combined fields; bext's own fields (id=...) come after.
    after = line.split('"ua \\x22quoted\\x22" ', 1)[1].split(" ")
    float(after[0])
    assert all("=" in field for field in after[1:]) and after[1].startswith("id=")


def test_many_concurrent_connections(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=2))
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    for sock in socks:
        conn = RawConnection.__new__(RawConnection)
        conn.sock, conn.buffer = sock, b""
        sock.settimeout(10)
        assert conn.read_response().status == 200
        sock.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_pipelining_and_chunked_bodies_on_a_real_master(start_bext: Start, engine: str) -> None:
    routes = """
[[route_rules]]
pattern = "/a"
respond = { status = 200, body = "A" }
[[route_rules]]
pattern = "/b"
respond = { status = 201, body = "BB" }
"""
    server = start_bext(config(routes, workers=1, http1_engine=engine))
    with RawConnection(server.port) as conn:
        conn.send(
            b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert conn.read_response().body == b"A"
        second = conn.read_response()
        assert second.status == 201 and second.body == b"BB"
        assert conn.read_response(head_only=True).header("content-length") == "1"
        assert conn.read_response().status == 404
        last = conn.read_response()
        assert last.status == 201 and last.header("connection") == "close"
        assert conn.is_closed()
