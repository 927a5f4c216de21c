"""In-process cost of one HTTP/2 request on each engine: no client sockets, no h2load.

One :class:`~bext.worker.h2_connection.H2Connection` on a fake transport answers
``GET /index.html`` from a 1 KiB ``respond`` rule (``respond-1k``'s rule, through the real
pipeline), one stream after another on one connection, once per ``server.http2.engine``
(``h2``, then ``nghttp2``). The client side costs almost nothing: the request's header
block is encoded once (then it is all HPACK table references, valid for every stream) and
the responses are only scanned for END_STREAM. The number is the best of five batches of
5,000 requests, microseconds per request: what the engine choice saves per request, without
the noise of a 2-core load test. ``bench/inproc_h2.py 40`` also prints the 40 most
expensive functions (cProfile) per engine; ``--engine h2`` runs one engine only.
"""

from __future__ import annotations

import asyncio
import struct
import sys

import uvloop
from hpack import Encoder
from inproc_support import seconds_per_request, worker_context

from bext.worker.h2_connection import H2Connection

BODY = "x" * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME = struct.Struct(">HBBBL")  # length (24 bits, as 16 + 8), type, flags, stream id
HEADERS, SETTINGS, WINDOW_UPDATE = 0x1, 0x4, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
FIELDS = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/index.html"),
    (b":authority", b"localhost"),
    (b"user-agent", b"h2load"),
    (b"accept", b"*/*"),
]


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return FRAME.pack(len(payload) >> 8, len(payload) & 0xFF, kind, flags, sid) + payload


class ClientTransport:
    """Where bext writes: the pending request is complete at its stream's END_STREAM."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.sid = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def write(self, data: bytes) -> None:
        pos = 0
        while pos + 9 <= len(data):  # bext writes whole frames
            hi, lo, kind, flags, sid = FRAME.unpack_from(data, pos)
            pos += 9 + (hi << 8 | lo)
            if sid == self.sid and flags & END_STREAM and kind <= HEADERS:
                waiter = self.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def set_write_buffer_limits(self, *args: object) -> None: ...

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def measure(engine: str, top: int) -> float:
    loop = asyncio.get_running_loop()
    text = f"""
[server.http2]
engine = "{engine}"
[log]
access = "off"
[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "{BODY}", content_type = "text/plain" }}
"""
    ctx, pipeline = worker_context(text)
    connection = H2Connection(ctx)
    transport = ClientTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    name = connection._engine.name
    assert name == engine, (name, engine)
    # The client's preface, its SETTINGS and the largest connection window (the responses
    # never wait for a WINDOW_UPDATE), then its ACK of bext's SETTINGS.
    connection.data_received(
        PREFACE
        + frame(SETTINGS, 0, 0, b"")
        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1 - 65535))
        + frame(SETTINGS, ACK, 0, b"")
    )
    encoder = Encoder()
    first = encoder.encode(FIELDS)  # enters the fields into both HPACK tables
    block = encoder.encode(FIELDS)  # from now on: table references only

    async def one(header_block: bytes) -> None:
        transport.sid += 2
        transport.waiter = loop.create_future()
        connection.data_received(
            frame(HEADERS, END_HEADERS | END_STREAM, transport.sid, header_block)
        )
        await transport.waiter

    transport.sid = -1
    await one(first)
    if top:
        print(f"-- engine = {engine}")
    best = await seconds_per_request(lambda: one(block), top)
    connection.abort()
    pipeline.close()
    return best


async def main() -> None:
    top = next((int(arg) for arg in sys.argv[1:] if arg.isdigit()), 0)
    engines = ["h2", "nghttp2"]
    if "--engine" in sys.argv:
        engines = [sys.argv[sys.argv.index("--engine") + 1]]
    results = {engine: await measure(engine, top) for engine in engines}
    for engine, best in results.items():
        print(f"engine = {engine:8} {best * 1e6:6.1f} us/request")
    if len(results) == 2:
        print(f"nghttp2 saves {(results['h2'] - results['nghttp2']) * 1e6:.1f} us/request")


if __name__ == "__main__":
    uvloop.run(main())
