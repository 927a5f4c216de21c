"""Serve the real H1Connection on a loopback port from a thread, with test handlers.

The subprocess master (``tests/support/server.py``) is the real thing end to end; this
harness exists for behaviours no config-built route shows yet (echoing a request body,
streaming a chunked response, failing half way), exercised over real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.worker.context import Timeouts, WorkerContext
from bext.worker.h1_connection import H1Connection
from bext.worker.main import parser_factory

HandlerFn = Callable[[Request], Response | Awaitable[Response]]


class _Handler:
    def __init__(self, fn: HandlerFn) -> None:
        self.fn = fn

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        return self.fn(request)


@contextmanager
def serve(
    handler: HandlerFn,
    engine: str = "httptools",
    limits: ParserLimits | None = None,
    timeouts: Timeouts | None = None,
) -> Iterator[int]:
    """Run a worker-like server in a thread; yields its port."""
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    ctx = WorkerContext(
        handler=_Handler(handler),
        parser_factory=parser_factory(engine),
        limits=limits or ParserLimits(),
        timeouts=timeouts or Timeouts(),
        access_log=AccessLog("off"),
    )
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(lambda: H1Connection(ctx), sock=sock))
        started.set()
        loop.run_forever()
        server.close()
        for conn in list(ctx.connections):
            conn.abort()
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
