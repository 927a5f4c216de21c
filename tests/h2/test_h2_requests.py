"""HTTP/2 requests and responses: mapping to the pipeline, bodies, trailers, errors.

Clients: httpx (with h2) for ordinary traffic, :class:`RawH2` where the exact frames matter.
Every server is the in-process harness on 127.0.0.1 port 0; h2c prior knowledge on the
plain listener unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bext.http.body import BodyError
from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.proxy.tunnel import Tunnel
from tests.h2.h2client import PROTOCOL_ERROR, RawH2
from tests.h2.support import RecordingCounters, assert_stream_error
from tests.support.inproc import serve, serve_harness

LOOPS = ("asyncio", "uvloop")


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for something the server thread does right after the client saw the reply."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def h2c(port: int) -> httpx.Client:
    """httpx speaking HTTP/2 with prior knowledge (no TLS, no upgrade)."""
    return httpx.Client(http1=False, http2=True, base_url=f"http://127.0.0.1:{port}", timeout=10)


async def echo(request: Request) -> Response:
    body = await request.body.read_all(1 << 30)
    return Response(200, [(b"Content-Type", b"application/octet-stream")], body)


def describe(request: Request) -> Response:
    lines = [
        f"{request.method} {request.target.decode()} {request.http_version} {request.scheme}",
        f"host={request.host}",
        *(f"{n.decode()}: {v.decode()}" for n, v in request.headers),
    ]
    return Response(200, [(b"Content-Type", b"text/plain")], "\n".join(lines).encode())


@pytest.mark.parametrize("loop", LOOPS)
def test_request_mapping(loop: str) -> None:
    with serve(describe, loop=loop) as port, RawH2(port) as conn:
        conn.request(
            1,
            b"/a/b?c=d",
            extra=[
                (b"cookie", b"a=1"),
                (b"accept", b"*/*"),
                (b"cookie", b"b=2"),
                (b"x-custom", b"v"),
            ],
            authority=b"example.test:8080",
        )
        reply = conn.response(1)
        assert reply.status == 200
        lines = reply.body.decode().split("\n")
        assert lines[0] == "GET /a/b?c=d 2.0 http"
        assert lines[1] == "host=example.test:8080"
        # host from :authority first; cookie crumbs joined where the first one was.
        assert lines[2:] == [
            "host: example.test:8080",
            "cookie: a=1; b=2",
            "accept: */*",
            "x-custom: v",
        ]
        names = [name for name, _ in reply.headers]
        assert names[:3] == [b":status", b"date", b"server"]
        assert reply.header(b"content-length") == str(len(reply.body)).encode()


def test_host_header_without_authority_and_mismatch() -> None:
    with serve(describe) as port, RawH2(port) as conn:
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b"host", b"h.test"),
        ]
        conn.send(conn.headers_frame(1, fields))
        reply = conn.response(1)
        assert reply.status == 200 and b"host=h.test" in reply.body
        conn.request(3, extra=[(b"host", b"other.test")], authority=b"h.test")
        reply = conn.response(3)
        assert reply.status == 400


@pytest.mark.parametrize("loop", LOOPS)
def test_many_multiplexed_streams(loop: str) -> None:
    async def slow(request: Request) -> Response:
        n = int(request.target[1:])
        await asyncio.sleep((n % 7) * 0.01)
        return Response(200, [], b"%d" % n * (n % 50 + 1))

    counters = RecordingCounters()

    async def run(port: int) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            http1=False, http2=True, limits=limits, base_url=f"http://127.0.0.1:{port}"
        ) as client:
            return await asyncio.gather(*(client.get(f"/{i}") for i in range(300)))

    with serve_harness(slow, loop=loop, counters=counters) as server:
        replies = asyncio.run(run(server.port))
    for i, r in enumerate(replies):
        assert r.http_version == "HTTP/2" and r.content == b"%d" % i * (i % 50 + 1)
    assert counters.opened == 1  # all of them multiplexed on one connection
    assert len(counters.responses) == 300


def test_large_upload_and_download(tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def hashing(request: Request) -> Response:
        sha = hashlib.sha256()
        async for chunk in request.body:
            sha.update(chunk)
        return Response(200, [], sha.hexdigest().encode())

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    def handler(request: Request) -> Response | asyncio.Future[Response]:
        if request.target == b"/bytes":
            return Response(200, [], data)
        if request.target == b"/stream":
            return Response(200, [], stream=chunks(), content_length=len(data))
        if request.target == b"/file":
            fd = os.open(path, os.O_RDONLY)
            return Response(200, [], file=FileBody(fd, 0, len(data)))
        return asyncio.ensure_future(hashing(request))

    with serve(handler) as port, h2c(port) as client:
        r = client.post("/upload", content=data)
        assert r.http_version == "HTTP/2" and r.text == digest
        for target in ("/bytes", "/stream", "/file"):
            r = client.get(target)
            assert r.headers["content-length"] == str(len(data))
            assert hashlib.sha256(r.content).hexdigest() == digest, target


def test_head_204_304_have_no_body() -> None:
    def handler(request: Request) -> Response:
        status = int(request.target[1:])
        return Response(status, [(b"ETag", b'"x"')], b"twelve bytes" if status == 200 else b"")

    async def streamed() -> AsyncIterator[bytes]:
        yield b"never sent"

    with serve(handler) as port, RawH2(port) as conn:
        conn.request(1, b"/200", method=b"HEAD")
        conn.request(3, b"/204")
        conn.request(5, b"/304")
        for sid in (1, 3, 5):
            reply = conn.response(sid)
            assert reply.body == b"" and len(reply.frames) == 1
            assert "END_STREAM" in reply.frames[0].flags  # HEADERS ends the stream
        assert conn.reply(1).header(b"content-length") == b"12"
        assert conn.reply(3).header(b"content-length") is None
        assert conn.reply(5).header(b"content-length") is None

    closed: list[bool] = []

    class Source:
        """A response stream that records being closed without ever being read."""

        def __aiter__(self) -> Source:
            return self

        async def __anext__(self) -> bytes:
            raise AssertionError("HEAD must not read the body")

        async def aclose(self) -> None:
            closed.append(True)

    def stream_handler(request: Request) -> Response:
        return Response(200, [], stream=Source(), content_length=10)

    with serve(stream_handler) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"HEAD")
        reply = conn.response(1)
        assert reply.body == b"" and reply.header(b"content-length") == b"10"
        wait_for(lambda: closed == [True])


def test_response_headers_lowercased_connection_specific_dropped() -> None:
    def handler(request: Request) -> Response:
        return Response(
            200,
            [
                (b"Content-Type", b"text/plain"),
                (b"Connection", b"close"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Upgrade", b"h2c"),
                (b"Proxy-Connection", b"close"),
                (b"Content-Length", b"999"),
                (b"X-Mixed-Case", b"yes"),
            ],
            b"ok",
        )

    with serve(handler) as port, RawH2(port) as conn:
        conn.request(1)
        reply = conn.response(1)
        assert [n for n, _ in reply.headers if not n.startswith(b":")] == [
            b"date",
            b"server",
            b"content-type",
            b"x-mixed-case",
            b"content-length",
        ]
        assert reply.header(b"content-length") == b"2"


def test_shared_response_is_not_modified() -> None:
    shared = Response(200, [(b"Content-Type", b"text/plain")], b"same for all")
    shared.shared = True
    before = list(shared.headers)
    with serve(lambda r: shared) as port, h2c(port) as client:
        for _ in range(3):
            assert client.get("/").text == "same for all"
    assert shared.headers == before and shared.wire_cache is None


def test_request_trailers(h2_engine_name: str) -> None:
    async def handler(request: Request) -> Response:
        body = await request.body.read_all(1 << 20)
        trailers = request.body.trailers or []
        text = b";".join(n + b"=" + v for n, v in trailers)
        return Response(200, [], body + b"|" + text)

    with serve(handler) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"POST", body=b"payload", end_stream=False)
        conn.send(conn.headers_frame(1, [(b"x-checksum", b"abc"), (b"x-more", b"1")]))
        reply = conn.response(1)
        assert reply.body == b"payload|x-checksum=abc;x-more=1"
        # Pseudo-header fields in trailers make the request malformed.
        conn.request(3, b"/", method=b"POST", body=b"x", end_stream=False)
        time.sleep(0.1)  # the handler is reading the body when the trailers arrive
        conn.send(conn.headers_frame(3, [(b":path", b"/nope")]))
        assert_stream_error(conn.response(3), h2_engine_name)
        conn.request(5)
        assert conn.response(5).status == 200 and conn.goaway is None


def test_response_trailers() -> None:
    def handler(request: Request) -> Response:
        if request.target == b"/bytes":
            response = Response(200, [], b"body")
            response.trailers = [(b"X-Digest", b"d1")]
            return response

        async def produce() -> AsyncIterator[bytes]:
            yield b"part1"
            yield b"part2"
            response.trailers = [(b"grpc-status", b"0"), (b"Connection", b"dropped")]

        response = Response(200, [(b"Content-Type", b"application/grpc")], stream=produce())
        return response

    with serve(handler) as port, RawH2(port) as conn:
        conn.request(1, b"/stream")
        conn.request(3, b"/bytes")
        reply = conn.response(1)
        assert reply.body == b"part1part2"
        assert reply.trailers == [(b"grpc-status", b"0")]
        assert "END_STREAM" not in reply.frames[-2].flags  # the last DATA leaves it open
        reply = conn.response(3)
        assert reply.body == b"body" and reply.trailers == [(b"x-digest", b"d1")]


def test_handler_errors() -> None:
    async def stream_fails() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("upstream died")

    closed: list[str] = []

    class FakeTunnel(Tunnel):
        def __init__(self) -> None:
            pass

        def close(self) -> None:
            closed.append("tunnel")

    async def body_error(request: Request) -> Response:
        raise BodyError("bad body")

    def handler(request: Request) -> Response | asyncio.Future[Response]:
        if request.target == b"/boom":
            raise RuntimeError("handler bug")
        if request.target == b"/tunnel":
            return Response(101, [], tunnel=FakeTunnel())
        if request.target == b"/informational":
            return Response(103, [(b"link", b"</a.css>; rel=preload")])
        if request.target == b"/broken":
            return Response(200, [], stream=stream_fails())
        if request.target == b"/short":
            return Response(200, [], stream=stream_fails().__aiter__(), content_length=100)
        return asyncio.ensure_future(body_error(request))

    with serve(handler) as port, RawH2(port) as conn:
        conn.request(1, b"/boom")
        assert conn.response(1).status == 500
        conn.request(3, b"/tunnel")
        assert conn.response(3).status == 502 and closed == ["tunnel"]
        conn.request(5, b"/broken")
        reply = conn.response(5)
        assert reply.reset is not None and not reply.ended  # truncated, never complete
        conn.request(7, b"/bodyerror")
        assert conn.response(7).status == 400
        conn.request(9, b"/informational")
        assert conn.response(9).status == 502  # a 1xx cannot be a final response
        conn.request(11, b"/boom")
        assert conn.response(11).status == 500  # the connection survived all of it


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")], 400),
        ([(b":method", b"GET"), (b":path", b"/"), (b":authority", b"x")], 400),
        ([(b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")], 400),
        (
            [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b""), (b":authority", b"x")],
            400,
        ),
        (
            [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"x"), (b":authority", b"x")],
            400,
        ),
        ([(b":method", b"CONNECT"), (b":authority", b"x:443")], 405),
        (
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"connection", b"close"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"transfer-encoding", b"chunked"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"upgrade", b"h2c"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"te", b"gzip"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"X-Upper", b"1"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"x", b" padded"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b"x", b"1"),
                (b":authority", b"x"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":status", b"200"),
                (b":authority", b"x"),
            ],
            400,
        ),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")], 400),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"a@b"),
            ],
            400,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"expect", b"magic"),
            ],
            417,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/" + b"a" * 9000),
                (b":authority", b"x"),
            ],
            414,
        ),
        (
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                *[(b"x-%d" % i, b"v") for i in range(101)],
            ],
            431,
        ),
    ],
)
def test_malformed_and_refused_requests(
    fields: list[tuple[bytes, bytes]], status: int, h2_engine_name: str
) -> None:
    """Answered on the stream; malformed ones are then a stream error, never a connection one."""
    with serve(describe) as port, RawH2(port) as conn:
        conn.send(conn.headers_frame(1, fields))
        reply = conn.response(1)
        if status == 400:
            assert_stream_error(reply, h2_engine_name)
        else:
            assert reply.status == status
        conn.request(3, b"/ok")
        assert conn.response(3).status == 200
        assert conn.goaway is None


def test_malformed_request_with_body_is_reset_with_protocol_error(h2_engine_name: str) -> None:
    with serve(echo) as port, RawH2(port) as conn:
        fields = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"x"),
            (b"connection", b"x"),
        ]
        conn.send(conn.headers_frame(1, fields, end_stream=False))
        conn.read_until(lambda: conn.reply(1).reset is not None)
        assert_stream_error(conn.reply(1), h2_engine_name)


def test_body_size_limit() -> None:
    limits = ParserLimits(max_body_size=100_000)
    with serve(echo, limits=limits) as port, RawH2(port) as conn:
        conn.request(
            1, b"/", method=b"POST", extra=[(b"content-length", b"200000")], end_stream=False
        )
        reply = conn.response(1)
        assert reply.status == 413
        conn.read_until(lambda: reply.reset is not None)
        assert reply.reset == 0  # NO_ERROR: stop sending, the answer is complete
        # No length announced: cut off when the body grows past the limit.
        conn.request(3, b"/", method=b"POST", body=b"a" * 150_000)
        reply = conn.response(3)
        assert reply.status == 413
        conn.request(5, b"/", method=b"POST", body=b"small")
        assert conn.response(5).body == b"small"


def test_content_length_mismatch_is_refused(h2_engine_name: str) -> None:
    """Both engines enforce content-length themselves: h2 as a connection error (RFC 9113
    §5.4.1 allows it), nghttp2 as the stream error §8.1.1 asks for."""
    with serve(echo) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"POST", extra=[(b"content-length", b"3")], body=b"four")
        if h2_engine_name == "nghttp2":
            conn.read_until(lambda: conn.reply(1).reset is not None)
            assert conn.reply(1).reset == PROTOCOL_ERROR
            conn.request(3)
            assert conn.response(3).status == 200 and conn.goaway is None
        else:
            goaway = conn.wait_goaway()
            assert goaway.error_code == PROTOCOL_ERROR
    with serve(echo) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"POST", extra=[(b"content-length", b"3")], body=b"ab")
        reply = conn.reply(1)
        conn.read_until(lambda: conn.goaway is not None or reply.reset is not None)
        if h2_engine_name == "nghttp2":
            assert_stream_error(reply, h2_engine_name)
        else:
            assert (conn.goaway and conn.goaway.error_code == PROTOCOL_ERROR) or reply.status == 400


def test_expect_100_continue() -> None:
    with serve(echo) as port, RawH2(port) as conn:
        conn.request(
            1, b"/", method=b"POST", extra=[(b"expect", b"100-continue")], end_stream=False
        )
        conn.read_until(lambda: bool(conn.reply(1).informational))
        assert conn.reply(1).informational[0] == [(b":status", b"100")]
        conn.data(1, b"data", end_stream=True)
        assert conn.response(1).body == b"data"


def test_counters_and_access_log(tmp_path: Path) -> None:
    counters = RecordingCounters()
    log_path = tmp_path / "access.log"
    access_log = AccessLog(str(log_path))
    with (
        serve_harness(describe, counters=counters, access_log=access_log) as server,
        RawH2(server.port) as conn,
    ):
        conn.request(1, b"/first?x=1", extra=[(b"user-agent", b"raw/1")])
        conn.request(3, b"/second", method=b"HEAD")
        conn.response(1)
        conn.response(3)
        conn.close()
        server.call(lambda: None)
        for _ in range(50):
            if counters.closed:
                break
            asyncio.run(asyncio.sleep(0.02))
        server.call(access_log.flush)
        assert server.ctx.connections == set()
    assert counters.opened == 1 and counters.closed == 1
    assert [status for status, _ in counters.responses] == [200, 200]
    lines = sorted(log_path.read_text().splitlines(), key=lambda line: "HEAD" in line)
    assert len(lines) == 2
    assert '"GET /first?x=1 HTTP/2.0" 200' in lines[0] and '"raw/1"' in lines[0]
    assert '"HEAD /second HTTP/2.0" 200 0' in lines[1]
