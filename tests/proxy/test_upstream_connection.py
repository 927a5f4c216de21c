"""One upstream connection against a scripted upstream on loopback: what goes back to the
pool must be ready for the next response."""

from __future__ import annotations

import asyncio

from bext.config.schema import UpstreamServer
from bext.proxy.connection import ResponseHead
from bext.proxy.pool import ConnectionPool
from bext.proxy.spill import SpillBuffer

BODY = b"x" * 100_000


def test_a_connection_paused_by_a_full_buffer_is_read_again_once_back_in_the_pool() -> None:
    # The read that completes a response may also fill its buffer (streaming: 64 KiB), which
    # pauses reading; the connection then goes back to the pool. If the client leaves
    # without reading, nothing resumes it: the next response on it must be read anyway.
    async def main() -> tuple[bool, list[int]]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
                await writer.drain()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream = UpstreamServer(url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
        pool = ConnectionPool(upstream, keepalive=4, connect_timeout=1.0, read_timeout=1.0)
        try:
            conn = await pool.acquire()
            first = SpillBuffer(64 * 1024, 0, None, conn.pause_reading, conn.resume_reading)
            conn.begin(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", False, first)
            for _ in range(100):
                if first.done:
                    break
                await asyncio.sleep(0.01)
            first.close()  # the client went away without reading
            again = pool.take_idle()
            statuses: list[int] = []

            def headed(waiter: asyncio.Future[ResponseHead]) -> None:
                statuses.append(waiter.result().status)

            second = SpillBuffer(1 << 20, 0, None, conn.pause_reading, conn.resume_reading)
            assert again is not None
            again.begin(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", False, second, False, headed)
            for _ in range(100):
                if second.done:
                    break
                await asyncio.sleep(0.01)
            return again is conn and second.total == len(BODY), statuses
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    reused, statuses = asyncio.run(main())
    assert reused and statuses == [200]
