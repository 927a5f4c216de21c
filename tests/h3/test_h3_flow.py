"""Flow control and concurrency: big transfers stay byte-identical and bounded in memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator

from bext.http.message import Request, Response
from bext.protocol.h3_limits import H3Limits
from bext.worker.context import WorkerContext
from bext.worker.h3_connection import H3Connection
from tests.support.h3client import h3_connect, run, until
from tests.support.inproc_h3 import H3PKI, serve_h3

MB = 1024 * 1024
BODY_HIGH_WATER = 256 * 1024  # RequestBody's default


def _connection(ctx: WorkerContext) -> H3Connection:
    (conn,) = ctx.connections
    assert isinstance(conn, H3Connection)
    return conn


def test_large_upload_is_bounded(pki: H3PKI) -> None:
    """5 MB to a handler that reads slowly: QUIC credit holds the uploader back."""
    data = os.urandom(5 * MB)
    peak = [0]

    async def handler(request: Request) -> Response:
        digest = hashlib.sha256()
        consumed = 0
        async for chunk in request.body:
            consumed += len(chunk)
            digest.update(chunk)
            peak[0] = max(peak[0], request.body.received - consumed)
            step = 128 * 1024
            if consumed < MB and consumed // step != (consumed - len(chunk)) // step:
                await asyncio.sleep(0.05)  # a slow consumer for the first megabyte
        return Response(200, [], b"%s %d" % (digest.hexdigest().encode(), consumed))

    limits = H3Limits(stream_window=256 * 1024)

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            response = await client.request("PUT", "/upload", body=data)
            assert response.status == 200
            assert response.body == b"%s %d" % (
                hashlib.sha256(data).hexdigest().encode(),
                len(data),
            )

    with serve_h3(lambda r: handler(r), pki, limits=limits) as server:
        run(main(server.port))
    # buffered unread: the body's high water mark plus at most one window of credit
    assert BODY_HIGH_WATER < peak[0] <= BODY_HIGH_WATER + limits.stream_window + 64 * 1024, peak[0]


def test_large_download_is_bounded(pki: H3PKI) -> None:
    """10 MB streamed: the generator is never pulled while QUIC holds too much."""
    block = os.urandom(64 * 1024)
    blocks = 160
    peak = [0]
    contexts: list[WorkerContext] = []

    async def body() -> AsyncIterator[bytes]:
        conn = _connection(contexts[0])
        for _ in range(blocks):
            peak[0] = max(peak[0], conn.send_backlog)
            yield block

    def handler(request: Request) -> Response:
        return Response(200, [], stream=body(), content_length=len(block) * blocks)

    limits = H3Limits(send_buffer=256 * 1024)

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            digest = hashlib.sha256()
            response = await client.request("GET", "/download", sink=digest.update)
            assert response.status == 200
            assert response.received == len(block) * blocks
            assert digest.hexdigest() == hashlib.sha256(block * blocks).hexdigest()

    with serve_h3(handler, pki, limits=limits) as server:
        contexts.append(server.ctx)
        run(main(server.port))
    # the generator is only resumed while QUIC holds no more than send_buffer, so QUIC
    # never holds more than that plus one block
    assert limits.send_buffer // 2 < peak[0] <= limits.send_buffer, peak[0]


def test_stalled_reader_stops_the_producer(pki: H3PKI) -> None:
    """A client that grants no more credit: the response stream is not read on, and is
    closed once the client resets the stream."""
    produced = [0]
    closed = threading.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                produced[0] += 16 * 1024
                yield b"z" * (16 * 1024)
        finally:
            closed.set()

    limits = H3Limits(send_buffer=128 * 1024)
    window = 64 * 1024

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca, max_stream_data=window) as client:
            client.hold_credit()
            stream_id = client.open("GET", "/endless")
            await until(lambda: client.responses[stream_id].received >= window - 1024)
            await asyncio.sleep(0.3)
            assert produced[0] <= window + limits.send_buffer + 2 * 16 * 1024, produced[0]
            client.cancel(stream_id)
            await until(closed.is_set)

    with serve_h3(lambda r: Response(200, [], stream=endless()), pki, limits=limits) as server:
        run(main(server.port))


def test_many_concurrent_streams(pki: H3PKI) -> None:
    active = [0]
    peak = [0]

    async def handler(request: Request) -> Response:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            await asyncio.sleep(0.005)
        finally:
            active[0] -= 1
        return Response(200, [], request.target)

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            responses = await asyncio.gather(
                *(client.request("GET", f"/r/{i}") for i in range(300))
            )
            assert [r.body for r in responses] == [f"/r/{i}".encode() for i in range(300)]
            assert all(r.status == 200 for r in responses)

    with serve_h3(lambda r: handler(r), pki, limits=H3Limits(max_streams=32)) as server:
        run(main(server.port))
    assert 1 < peak[0] <= 32  # QUIC's stream limit holds concurrency
