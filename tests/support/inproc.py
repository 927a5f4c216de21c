"""Serve the real connection classes on a loopback port from a thread, with test handlers.

The subprocess master (``tests/support/server.py``) is the real thing end to end; this
harness exists for behaviours no config-built route shows yet (echoing a request body,
streaming a chunked response, failing half way), exercised over real sockets.

Plain listeners serve :class:`H1Connection` (which hands h2c prior knowledge over to
HTTP/2); with ``ssl_context`` the listener negotiates ``h2`` or ``http/1.1`` by ALPN through
the same dispatcher the worker uses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop

from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.protocol.h2_limits import H2Limits
from bext.shm.counters import NullCounters, SlotCounters
from bext.worker.alpn import ALPN_PROTOCOLS, alpn_protocol_factory
from bext.worker.context import Timeouts, WorkerContext
from bext.worker.h1_connection import H1Connection
from bext.worker.main import parser_factory

HandlerFn = Callable[[Request], Response | Awaitable[Response]]
T = TypeVar("T")
S = TypeVar("S")

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class FnHandler:
    """A handler function as the handler object a WorkerContext expects."""

    def __init__(self, fn: HandlerFn) -> None:
        self.fn = fn

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        return self.fn(request)


class RecordingCounters(NullCounters):
    """Counts what a worker's shared-memory block would (the server thread writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.closed = 0
        self.bytes_in = 0
        self.responses: list[tuple[int, int]] = []

    def response(self, status: int, sent: int, route: int = -1, duration: float = 0.0) -> None:
        self.responses.append((status, sent))

    def received(self, size: int) -> None:
        self.bytes_in += size

    def connection_opened(self, version: int = 0) -> None:
        self.opened += 1

    def connection_closed(self, version: int = 0) -> None:
        self.closed += 1


class LoopCalls:
    """``call()`` for a harness whose server runs on ``self.loop`` in another thread."""

    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the server's loop and return its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(5)


@contextmanager
def loop_thread(
    loop: asyncio.AbstractEventLoop,
    start: Callable[[], Awaitable[S]],
    close: Callable[[S], None],
) -> Iterator[S]:
    """Run ``loop`` in a thread: ``start()`` on it, yield its result, then on exit stop the
    loop, ``close(server)``, give connections a moment, cancel what is left and close."""
    started: Future[S] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(start())
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(server)
        loop.run_forever()

        async def shut() -> None:
            close(server)
            await asyncio.sleep(0.05)

        loop.run_until_complete(shut())
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    server = started.result(10)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@dataclass
class Harness(LoopCalls):
    """A running in-process server: its port, context and event loop."""

    port: int
    ctx: WorkerContext
    loop: asyncio.AbstractEventLoop

    def shutdown_connections(self) -> None:
        """What a draining worker does: ``shutdown()`` every connection."""

        def shutdown() -> None:
            self.ctx.stopping = True
            for conn in list(self.ctx.connections):
                conn.shutdown()

        self.call(shutdown)


@contextmanager
def serve_harness(
    handler: HandlerFn,
    engine: str = "httptools",
    limits: ParserLimits | None = None,
    timeouts: Timeouts | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    h2: H2Limits | None = None,
    loop: str = "asyncio",
    counters: SlotCounters | None = None,
    max_keepalive_requests: int = 1000,
    access_log: AccessLog | None = None,
) -> Iterator[Harness]:
    """Run a worker-like server in a thread; yields its :class:`Harness`."""
    event_loop = LOOPS[loop]()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    ctx = WorkerContext(
        handler=FnHandler(handler),
        parser_factory=parser_factory(engine),
        limits=limits or ParserLimits(),
        timeouts=timeouts or Timeouts(),
        access_log=access_log or AccessLog("off"),
        scheme="https" if ssl_context is not None else "http",
        counters=counters or NullCounters(),
        max_keepalive_requests=max_keepalive_requests,
        h2=h2 or H2Limits(),
    )
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(ALPN_PROTOCOLS)

    def start() -> Awaitable[asyncio.Server]:
        if ssl_context is None:
            factory: Callable[[], asyncio.Protocol] = lambda: H1Connection(ctx)  # noqa: E731
        else:
            factory = alpn_protocol_factory(ctx)
        return event_loop.create_server(factory, sock=sock, ssl=ssl_context)

    def close(server: asyncio.Server) -> None:
        server.close()
        for conn in list(ctx.connections):
            conn.abort()

    with loop_thread(event_loop, start, close):
        yield Harness(port, ctx, event_loop)


@contextmanager
def serve(handler: HandlerFn, *args: Any, **kwargs: Any) -> Iterator[int]:
    """:func:`serve_harness`, yielding just the port."""
    with serve_harness(handler, *args, **kwargs) as harness:
        yield harness.port
