"""HTTP/3 requests and responses end to end: aioquic's client against the real H3Server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from bext.http.body import BodyError
from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.proxy.tunnel import Tunnel
from bext.worker.context import Timeouts
from tests.support.h3client import h3_connect, run, until
from tests.support.inproc_h3 import H3PKI, RecordingCounters, serve_h3

H3_INTERNAL_ERROR = 0x102


def echo(request: Request) -> Response | asyncio.Future[Response]:
    """Echo method, target, host and selected headers; bodies are read asynchronously."""

    async def with_body() -> Response:
        body = await request.body.read_all(100 * 1024 * 1024)
        return Response(200, [(b"X-Method", request.method.encode())], body)

    if request.target.startswith(b"/body"):
        return asyncio.ensure_future(with_body())
    seen = b"|".join(b"%s=%s" % (name, value) for name, value in request.headers)
    return Response(
        200,
        [(b"X-Method", request.method.encode()), (b"Content-Type", b"text/plain")],
        b"%s %s %s %s\n%s"
        % (
            request.method.encode(),
            request.target,
            (request.host or "").encode(),
            request.http_version.encode(),
            seen,
        ),
    )


def test_get_head_post(pki: H3PKI) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            get = await client.request("GET", "/a?b=c")
            assert get.status == 200
            assert get.body.startswith(b"GET /a?b=c localhost 3\n")
            assert get.header(b"x-method") == b"GET"  # names lowercased
            assert get.header(b"content-length") == str(len(get.body)).encode()
            assert get.header(b"server") is not None and get.header(b"date") is not None
            head = await client.request("HEAD", "/a")
            assert head.status == 200 and head.body == b""
            assert head.header(b"content-length") is not None
            post = await client.request("POST", "/body", body=b"x" * 100_000)
            assert post.status == 200 and post.body == b"x" * 100_000
            assert post.header(b"x-method") == b"POST"

    with serve_h3(echo, pki) as server:
        run(main(server.port))


def test_host_added_and_cookies_joined(pki: H3PKI) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            response = await client.request(
                "GET",
                "/h",
                [(b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2")],
                authority="example.test:8443",
            )
            assert response.status == 200
            fields = response.body.split(b"\n")[1].split(b"|")
            assert fields[0] == b"host=example.test:8443"
            assert b"cookie=a=1; b=2" in fields
            assert b"accept=*/*" in fields
            assert b"example.test:8443 3" in response.body

    with serve_h3(echo, pki) as server:
        run(main(server.port))


def test_malformed_requests_are_refused(pki: H3PKI) -> None:
    def base(**change: bytes) -> list[tuple[bytes, bytes]]:
        fields = {b":method": b"GET", b":scheme": b"https", b":authority": b"localhost",
                  b":path": b"/"}  # fmt: skip
        for name, value in change.items():
            key = b":" + name.encode()
            if value == b"-":
                del fields[key]
            else:
                fields[key] = value
        return list(fields.items())

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            cases = [
                (base(scheme=b"http"), 400),
                (base(scheme=b"-", path=b"-"), 400),
                (base(path=b"nope"), 400),
                (base(method=b"CONNECT", scheme=b"-", path=b"-"), 405),
                (base(authority=b"bad host"), 400),
                (base(path=b"/" + b"a" * 9000), 414),
                ([*base(), (b"host", b"other.test")], 400),
                ([*base(), (b"expect", b"teapot")], 417),
            ]
            for fields, status in cases:
                stream_id = client.open(pseudo=fields)
                response = await client.response(stream_id)
                assert response.status == status, (fields, response)
            # the connection survives all of it
            assert (await client.request("GET", "/")).status == 200

    with serve_h3(echo, pki) as server:
        run(main(server.port))


def test_header_limits(pki: H3PKI) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            many = [(b"x-%d" % i, b"v") for i in range(20)]
            assert (await client.request("GET", "/", many)).status == 431
            big = [(b"x-big", b"v" * 3000)]
            assert (await client.request("GET", "/", big)).status == 431
            assert (await client.request("GET", "/", many[:5])).status == 200

    limits = ParserLimits(max_headers=10, max_header_size=2000)
    with serve_h3(echo, pki, parser_limits=limits) as server:
        run(main(server.port))


def test_no_body_statuses(pki: H3PKI) -> None:
    def handler(request: Request) -> Response:
        status = int(request.target[1:])
        return Response(status, [], b"should not be sent")

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            for status in (204, 304):
                response = await client.request("GET", f"/{status}")
                assert response.status == status
                assert response.body == b""
                assert response.header(b"content-length") is None

    with serve_h3(handler, pki) as server:
        run(main(server.port))


def test_streamed_and_shared_responses(pki: H3PKI) -> None:
    shared = Response(200, [(b"Content-Type", b"text/plain")], b"shared body")
    shared.shared = True
    closed = threading.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            for i in range(50):
                yield b"chunk %d\n" % i
                await asyncio.sleep(0)
        finally:
            closed.set()

    def handler(request: Request) -> Response:
        if request.target == b"/shared":
            return shared
        if request.target == b"/known":
            return Response(200, [], stream=chunks(), content_length=len(_chunks_body()))
        return Response(200, [], stream=chunks())

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            streamed = await client.request("GET", "/stream")
            assert streamed.body == _chunks_body()
            assert streamed.header(b"content-length") is None
            known = await client.request("GET", "/known")
            assert known.body == _chunks_body()
            assert known.header(b"content-length") == str(len(_chunks_body())).encode()
            head = await client.request("HEAD", "/stream")
            assert head.status == 200 and head.body == b""
            for _ in range(3):
                response = await client.request("GET", "/shared")
                assert response.body == b"shared body"
                assert response.header(b"content-type") == b"text/plain"

    with serve_h3(handler, pki) as server:
        run(main(server.port))
    assert closed.is_set()
    assert shared.headers == [(b"Content-Type", b"text/plain")]  # read-only


def _chunks_body() -> bytes:
    return b"".join(b"chunk %d\n" % i for i in range(50))


def test_file_response(pki: H3PKI, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    bodies: list[FileBody] = []

    def handler(request: Request) -> Response:
        body = FileBody(os.open(path, os.O_RDONLY), 100, len(data) - 100)
        bodies.append(body)
        return Response(200, [(b"Content-Type", b"application/octet-stream")], file=body)

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            digest = hashlib.sha256()
            response = await client.request("GET", "/file", sink=digest.update)
            assert response.status == 200
            assert response.received == len(data) - 100
            assert digest.hexdigest() == hashlib.sha256(data[100:]).hexdigest()
            assert response.header(b"content-length") == str(len(data) - 100).encode()
            head = await client.request("HEAD", "/file")
            assert (
                head.body == b"" and head.header(b"content-length") == str(len(data) - 100).encode()
            )

    with serve_h3(handler, pki) as server:
        run(main(server.port))
    assert len(bodies) == 2 and all(body.fd == -1 for body in bodies)  # always closed


def test_body_limit_413(pki: H3PKI) -> None:
    async def reader(request: Request) -> Response:
        body = await request.body.read_all(1 << 30)
        return Response(200, [], b"%d" % len(body))

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            declared = client.open("POST", "/", [(b"content-length", b"5000")], end_stream=False)
            response = await client.response(declared)
            assert response.status == 413
            # no content-length: the limit applies to what arrives
            streamed = client.open("POST", "/", end_stream=False)
            client.send(streamed, b"y" * 6000, end_stream=True)
            response = await client.response(streamed)
            assert response.status == 413
            small = await client.request("POST", "/", body=b"z" * 1000)
            assert small.status == 200 and small.body == b"1000"

    with serve_h3(
        lambda request: reader(request), pki, parser_limits=ParserLimits(max_body_size=4096)
    ) as server:
        run(main(server.port))


def test_handler_errors(pki: H3PKI) -> None:
    async def failing_later(request: Request) -> Response:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    async def body_error(request: Request) -> Response:
        raise BodyError("client sent garbage")

    async def broken_stream() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise RuntimeError("upstream went away")

    def handler(request: Request) -> Response | asyncio.Future[Response]:
        if request.target == b"/sync":
            raise RuntimeError("boom")
        if request.target == b"/async":
            return asyncio.ensure_future(failing_later(request))
        if request.target == b"/bodyerror":
            return asyncio.ensure_future(body_error(request))
        if request.target == b"/broken":
            return Response(200, [], stream=broken_stream())
        if request.target == b"/tunnel":

            class End:
                def write(self, data: bytes) -> None:
                    pass

                def pause_reading(self) -> None:
                    pass

                def resume_reading(self) -> None:
                    pass

                def close(self) -> None:
                    pass

            async def make() -> Response:
                tunnels.append(Tunnel(End(), 1.0))
                return Response(101, [], tunnel=tunnels[-1])

            return asyncio.ensure_future(make())
        return Response(200, [], b"ok")

    tunnels: list[Tunnel] = []

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            assert (await client.request("GET", "/sync")).status == 500
            assert (await client.request("GET", "/async")).status == 500
            assert (await client.request("GET", "/bodyerror")).status == 400
            assert (await client.request("GET", "/tunnel")).status == 502
            broken = await client.request("GET", "/broken")
            assert broken.reset == H3_INTERNAL_ERROR  # never a complete-looking body
            assert (await client.request("GET", "/")).status == 200

    with serve_h3(handler, pki) as server:
        run(main(server.port))
    assert tunnels and tunnels[0].closed


def test_trailers(pki: H3PKI) -> None:
    class TrailingResponse(Response):
        __slots__ = ("trailers",)

    async def body() -> AsyncIterator[bytes]:
        yield b"data"

    def handler(request: Request) -> Response:
        response = TrailingResponse(200, [], stream=body())
        response.trailers = [(b"Grpc-Status", b"0")]
        return response

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            response = await client.request("POST", "/", body=b"q")
            assert response.body == b"data"
            assert response.trailers == [(b"grpc-status", b"0")]

    with serve_h3(handler, pki) as server:
        run(main(server.port))


async def _read_all(request: Request) -> Response:
    body = await request.body.read_all(1 << 20)
    return Response(200, [], body)


def test_expect_continue(pki: H3PKI) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            stream_id = client.open("PUT", "/", [(b"expect", b"100-continue")], end_stream=False)
            pending = client.responses[stream_id]
            await until(lambda: pending.interim)
            assert pending.interim[0] == [(b":status", b"100")]
            client.send(stream_id, b"payload", end_stream=True)
            response = await client.response(stream_id)
            assert response.status == 200 and response.body == b"payload"

    with serve_h3(_read_all, pki) as server:
        run(main(server.port))


def test_request_body_timeout(pki: H3PKI) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            stalled = client.open("PUT", "/", end_stream=False)
            client.send(stalled, b"part")
            response = await client.response(stalled)
            assert response.status == 408

    with serve_h3(_read_all, pki, timeouts=Timeouts(body=0.3)) as server:
        run(main(server.port))


def test_client_reset_cancels_handler(pki: H3PKI) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def slow(request: Request) -> Response:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200, [], b"late")

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            stream_id = client.open("GET", "/slow")
            await until(started.is_set)
            client.cancel(stream_id)
            await until(cancelled.is_set)

    with serve_h3(lambda r: slow(r), pki) as server:
        run(main(server.port))


def test_access_log_and_counters(pki: H3PKI, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    access_log = AccessLog(str(log_path))
    counters = RecordingCounters()

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            await client.request("GET", "/logged?x=1", [(b"user-agent", b"h3-test")])
            await client.request("POST", "/body", body=b"abc")

    with serve_h3(echo, pki, counters=counters, access_log=access_log) as server:
        run(main(server.port))
        server.call(access_log.flush)
        run(until(lambda: counters.closed == 1))
    text = log_path.read_text()
    assert '"GET /logged?x=1 HTTP/3" 200' in text and "h3-test" in text
    assert '"POST /body HTTP/3" 200 3' in text
    assert counters.opened == 1 and counters.bytes_in > 0
    assert [status for status, _ in counters.responses] == [200, 200]


def test_header_blocks_are_bounded_before_decoding(pki: H3PKI) -> None:
    """No QPACK dynamic table, and a header block larger than a stream's first window
    is never decoded: the stream stalls on flow control until the header timeout."""
    H3_REQUEST_INCOMPLETE = 0x10D

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            assert (await client.request("GET", "/")).status == 200
            settings = client.h3.received_settings
            assert settings is not None
            assert settings[0x1] == 0 and settings[0x7] == 0  # QPACK capacity, blocked
            stream_id = client.open("GET", "/", [(b"x-h%d" % i, b"v" * 2000) for i in range(40)])
            response = await client.response(stream_id)
            assert response.reset == H3_REQUEST_INCOMPLETE
            assert (await client.request("GET", "/")).status == 200

    with serve_h3(echo, pki, timeouts=Timeouts(header=0.3)) as server:
        run(main(server.port))
