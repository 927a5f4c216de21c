"""HTTP/1.1 connection behaviour over real sockets, for both parser engines."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.protocol.events import ParserLimits
from bext.worker.context import Timeouts
from tests.conftest import ENGINES
from tests.support.inproc import serve
from tests.support.rawhttp import RawConnection

pytestmark = pytest.mark.parametrize("engine", ENGINES)


async def echo(request: Request) -> Response:
    body = await request.body.read_all(1 << 30)
    headers = [
        (b"Content-Type", b"application/octet-stream"),
        (b"X-Method", request.method.encode()),
    ]
    return Response(200, headers, body)


async def _numbers(count: int, delay: float) -> AsyncIterator[bytes]:
    for i in range(count):
        yield b"%d\n" % i
        await asyncio.sleep(delay)


def stream(request: Request) -> Response:
    return Response(200, [(b"Content-Type", b"text/plain")], stream=_numbers(5, 0.01))


def test_keep_alive_many_requests(engine: str) -> None:
    with serve(echo, engine) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(50):
            r = client.post("/", content=b"x" * i)
            assert r.status_code == 200 and r.content == b"x" * i
        assert r.headers["server"].startswith("bext")
        assert "date" in r.headers


def test_chunked_request_and_response_bodies(engine: str) -> None:
    with serve(echo, engine) as port, RawConnection(port) as conn:
        conn.send(
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
        )
        r = conn.read_response()
        assert r.status == 200 and r.body == b"hello world"
    with serve(stream, engine) as port, RawConnection(port) as conn:
        conn.send(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
        assert r.header("transfer-encoding") == "chunked"
        assert r.body == b"0\n1\n2\n3\n4\n"
        conn.send(b"GET /s HTTP/1.0\r\n\r\n")  # HTTP/1.0: close-delimited, never chunked
        r = conn.read_response()
        assert r.header("transfer-encoding") is None and r.body == b"0\n1\n2\n3\n4\n"


def test_pipelined_responses_keep_order(engine: str) -> None:
    async def slow_first(request: Request) -> Response:
        if request.target == b"/0":
            await asyncio.sleep(0.2)
        return Response(200, [], request.target)

    with serve(slow_first, engine) as port, RawConnection(port) as conn:
        conn.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(20)))
        bodies = [conn.read_response().body for _ in range(20)]
        assert bodies == [b"/%d" % i for i in range(20)]


def test_head_has_length_but_no_body(engine: str) -> None:
    with (
        serve(lambda r: Response(200, [], b"twelve bytes"), engine) as port,
        RawConnection(port) as conn,
    ):
        conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = conn.read_response(head_only=True)
        assert head.header("content-length") == "12"
        assert conn.read_response().body == b"twelve bytes"


def test_expect_100_continue(engine: str) -> None:
    with serve(echo, engine) as port, RawConnection(port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = conn.read_response(head_only=True)
        assert interim.status == 100
        conn.send(b"data")
        r = conn.read_response()
        assert r.status == 200 and r.body == b"data"


def test_expect_100_not_sent_when_body_unread_and_connection_closes(engine: str) -> None:
    with serve(lambda r: Response(403, [], b"no"), engine) as port, RawConnection(port) as conn:
        conn.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        r = conn.read_response()
        assert r.status == 403 and r.header("connection") == "close"
        assert conn.is_closed()


def test_unread_body_is_discarded_and_connection_reused(engine: str) -> None:
    with serve(lambda r: Response(200, [], b"ok"), engine) as port, RawConnection(port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n" + b"a" * 10000)
        assert conn.read_response().body == b"ok"
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().body == b"ok"


def test_body_limit_while_streaming_chunked(engine: str) -> None:
    with (
        serve(echo, engine, limits=ParserLimits(max_body_size=1000)) as port,
        RawConnection(port) as conn,
    ):
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
        r = conn.read_response()
        assert r.status == 413
        assert conn.is_closed()


def test_body_read_timeout(engine: str) -> None:
    timeouts = Timeouts(header=5, body=0.5, keepalive=5, send=5)
    with serve(echo, engine, timeouts=timeouts) as port, RawConnection(port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        r = conn.read_response()
        assert r.status == 408
        assert 0.4 < time.monotonic() - started < 3
        assert conn.is_closed()


def test_handler_exception_gives_500_and_connection_survives(engine: str) -> None:
    def broken(request: Request) -> Response:
        if request.target == b"/boom":
            raise RuntimeError("handler bug")
        return Response(200, [], b"fine")

    with serve(broken, engine) as port, RawConnection(port) as conn:
        conn.send(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 500
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().body == b"fine"


def test_stream_failing_midway_is_truncated_not_completed(engine: str) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"first part\n"
        raise RuntimeError("upstream died")

    with (
        serve(lambda r: Response(200, [], stream=failing()), engine) as port,
        RawConnection(port) as conn,
    ):
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(ConnectionError):
            conn.read_response()  # no terminating chunk ever arrives


def test_upload_backpressure_bounds_buffering(engine: str) -> None:
    """A handler that does not read yet makes bext stop reading the socket."""
    received: list[int] = []

    async def slow_reader(request: Request) -> Response:
        await asyncio.sleep(1.0)
        received.append(request.body.received)  # bytes taken off the socket meanwhile
        body = await request.body.read_all(1 << 30)
        return Response(200, [], b"%d" % len(body))

    size = 16 * 1024 * 1024
    with serve(slow_reader, engine) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        sock.settimeout(10)
        sent = 0
        chunk = b"z" * 65536
        while sent < size:
            sent += sock.send(chunk[: size - sent])
        conn = RawConnection.__new__(RawConnection)
        conn.sock, conn.buffer = sock, b""
        r = conn.read_response()
        sock.close()
        assert r.body == b"%d" % size
        # Kernel socket buffers hold some, but bext itself must not have slurped 16 MiB.
        assert received[0] < 8 * 1024 * 1024


def _file_handler(
    path: str, offset: int = 0, count: int | None = None
) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        fd = os.open(path, os.O_RDONLY)
        size = os.fstat(fd).st_size if count is None else count
        return Response(
            200, [(b"Content-Type", b"application/octet-stream")], file=FileBody(fd, offset, size)
        )

    return handler


def test_file_body_sent_with_sendfile(engine: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with serve(_file_handler(str(path)), engine) as port, RawConnection(port, timeout=10) as conn:
        for _ in range(2):  # keep-alive: the connection is reusable after a file
            conn.send(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
            r = conn.read_response()
            assert r.header("content-length") == str(len(data)) and r.body == data
        conn.send(b"HEAD /f HTTP/1.1\r\nHost: t\r\n\r\n")
        head = conn.read_response(head_only=True)
        assert head.header("content-length") == str(len(data))
        conn.send(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().body == data  # HEAD sent no body bytes


def test_file_range_and_slow_reader(engine: str, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024)  # more than the socket buffers hold: EAGAIN happens
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    count = 8 * 1024 * 1024
    handler = _file_handler(str(path), offset=1000, count=count)
    with serve(handler, engine) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
        received = b""
        sock.settimeout(10)
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        _, _, body = received.partition(b"\r\n\r\n")
        while len(body) < count:
            time.sleep(0.005)  # a slow reader: bext must wait for writability, not spin
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
        sock.close()
        assert body == data[1000 : 1000 + count]


def test_client_abort_during_file_keeps_server_healthy(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"z" * (8 * 1024 * 1024))
    with serve(_file_handler(str(path)), engine) as port:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(1000)
            sock.close()
        with httpx.Client() as client:
            assert len(client.get(f"http://127.0.0.1:{port}/f").content) == 8 * 1024 * 1024
