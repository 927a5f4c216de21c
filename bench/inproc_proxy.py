"""In-process cost of one proxied HTTP/1.1 request: no client sockets, no wrk.

One :class:`~bext.worker.h1_connection.H1Connection` on a fake transport proxies
``GET /index.html`` to a minimal upstream on 127.0.0.1 in the same event loop; the number
is the best of five batches of 5,000 requests (microseconds per request, the upstream's
share included). Useful to compare two trees of bext on the proxy path without the noise
of a 2-core load test: ``PYTHONPATH=<tree> .venv/bin/python bench/inproc_proxy.py``.
``bench/inproc_proxy.py 40`` also prints the 40 most expensive functions (cProfile).
``--respond`` measures a 1 KiB ``respond`` rule instead (``respond-1k``'s rule), the path
every answer takes without an upstream; ``--cache`` a hit of the response cache (the
upstream's answer is ``public, max-age=600``, so only the first request reaches it).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from typing import Any

import uvloop
from inproc_support import seconds_per_request, worker_context

from bext.worker.h1_connection import H1Connection

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n"
    + (b"Cache-Control: public, max-age=600\r\n\r\n" if "--cache" in sys.argv else b"\r\n")
    + BODY
)
REQUEST = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"


class Upstream(asyncio.Protocol):
    """Answers every request head with the same 1 KiB response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(RESPONSE)


class ClientTransport:
    """Where bext writes its responses: each write completes the pending request."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def write(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def write_eof(self) -> None: ...
    def set_write_buffer_limits(self, *args: object) -> None: ...

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="inproc-cache-") as store:
        if "--respond" in sys.argv:
            routes = f"""
[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "{BODY.decode()}", content_type = "text/plain" }}
"""
        elif "--cache" in sys.argv:
            routes = f"""
[cache]
path = "{store}"
[[route_rules]]
pattern = "/**"
proxy = "app"
cache = true
"""
        else:
            routes = """
[[route_rules]]
pattern = "/**"
proxy = "app"
"""
        ctx, pipeline = worker_context(f"""
[log]
access = "off"
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{port}"
{routes}""")
        connection = H1Connection(ctx)
        transport = ClientTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]

        async def one() -> None:
            transport.waiter = loop.create_future()
            connection.data_received(REQUEST)
            await transport.waiter

        top = next((int(arg) for arg in sys.argv[1:] if arg.isdigit()), 0)
        best = await seconds_per_request(one, top)
        print(f"{best * 1e6:.1f} us/request")
        connection.abort()
        pipeline.close()
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
