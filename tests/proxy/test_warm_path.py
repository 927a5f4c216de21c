"""The proxy's warm-connection path (``ProxyHandler._send_now``) against a real upstream on
loopback: a body-less GET on a pooled connection answers with a :class:`Deferred` that the
upstream connection's read settles, and a client that goes away aborts the upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY
from bext.http.deferred import Deferred
from bext.http.message import Request, Response
from bext.proxy.balancer import UpstreamGroup
from bext.proxy.connection import UpstreamConnection
from bext.proxy.handler import ProxyHandler
from bext.proxy.headers import TrustedProxies


def get(path: bytes) -> Request:
    return Request("GET", path, [(b"host", b"x")], "1.1", "http", "127.0.0.1", 1, 80,
                   EMPTY_BODY, 0.0, "x")  # fmt: skip


def test_a_warm_get_is_answered_in_the_read_that_brings_the_response() -> None:
    async def main() -> tuple[list[bool], bytes, bool, int]:
        hold = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if head.startswith(b"GET /slow"):
                    await hold.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = parse_config(
            {"upstreams": {"app": {"servers": [{"url": f"http://127.0.0.1:{port}"}]}}},
            base_dir=Path("/tmp"),
        )
        group = UpstreamGroup(config.upstreams[0])
        handler = ProxyHandler(group, TrustedProxies([]))
        inside_read: list[bool] = []
        reading = [False]
        original = UpstreamConnection.data_received

        def watched(conn: UpstreamConnection, data: bytes) -> None:
            reading[0] = True
            try:
                original(conn, data)
            finally:
                reading[0] = False

        UpstreamConnection.data_received = watched  # type: ignore[method-assign,assignment]
        try:
            cold = handler(get(b"/cold"))  # no pooled connection yet: a coroutine
            assert not isinstance(cold, Deferred | Response)
            await cold
            warm = handler(get(b"/warm"))
            assert isinstance(warm, Deferred)
            warm.then(lambda done: inside_read.append(reading[0]))
            response = await warm
            slow = handler(get(b"/slow"))
            assert isinstance(slow, Deferred)
            await asyncio.sleep(0.05)  # the request is out, the upstream holds its answer
            slow.cancel()  # the client went away
            hold.set()  # the answer comes now, to a connection that must be gone
            await asyncio.sleep(0.05)
            idle = sum(len(pool._idle) for pool in group.candidates())
            return inside_read, response.body, slow.cancelled(), idle
        finally:
            UpstreamConnection.data_received = original  # type: ignore[method-assign]
            for pool in group.candidates():
                pool.close()
            server.close()
            await server.wait_closed()

    inside_read, body, cancelled, idle = asyncio.run(main())
    assert inside_read == [True]  # settled in the upstream read, not a loop turn later
    assert body == b"ok"
    assert cancelled and idle == 0  # the aborted connection never went back to the pool


def test_a_retry_answer_nobody_takes_any_more_is_released() -> None:
    # The retry finished (its done callback, _settle, is queued) and the exchange is
    # cancelled before _settle runs: the retry's response is released, not orphaned.
    from functools import partial

    from bext.proxy.handler import _settle

    class Stream:
        closed = 0

        def __aiter__(self) -> Stream:
            return self

        async def __anext__(self) -> bytes:
            raise StopAsyncIteration

        async def aclose(self) -> None:
            Stream.closed += 1

    async def main() -> None:
        async def retry_exchange() -> Response:
            return Response(200, [], stream=Stream())

        result: Deferred[Response] = Deferred()
        retry = asyncio.ensure_future(retry_exchange())
        retry.add_done_callback(partial(_settle, result))
        result.on_cancel = retry.cancel
        await asyncio.sleep(0)  # the retry is done; _settle is queued
        result.cancel()  # the client went away
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert Stream.closed == 1
