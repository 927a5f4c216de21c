"""Serve the real H3Server on a loopback UDP port from a thread, with test handlers.

The HTTP/3 counterpart of ``tests/support/inproc.py``: a worker-like event loop (uvloop,
as in production) in a thread, one UDP socket on 127.0.0.1 port 0, ``start_h3`` on it and
a handler function instead of the pipeline. Certificates come from trustme.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvloop

from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.protocol.h1 import HttptoolsParser
from bext.protocol.h3_limits import H3Limits
from bext.shm.counters import NullCounters, SlotCounters
from bext.worker.context import Timeouts, WorkerContext
from bext.worker.h3_server import H3Certificates, H3Server, start_h3

HandlerFn = Callable[[Request], Response | Awaitable[Response]]
T = TypeVar("T")


class _Handler:
    def __init__(self, fn: HandlerFn) -> None:
        self.fn = fn

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        return self.fn(request)


@dataclass(frozen=True)
class H3PKI:
    """A CA, a default certificate (localhost, 127.0.0.1) and SNI ones for shop.test."""

    ca: Path
    certificates: H3Certificates


def make_pki(directory: Path) -> H3PKI:
    """RSA default certificate, ECDSA SNI certificate: the key type follows the choice."""
    ca = trustme.CA()
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    paths: dict[str, tuple[Path, Path]] = {}
    for name, hosts, key_type in (
        ("default", ("localhost", "127.0.0.1"), trustme.KeyType.RSA),
        ("shop", ("shop.test", "*.shop.test"), trustme.KeyType.ECDSA),
    ):
        leaf = ca.issue_cert(*hosts, key_type=key_type)
        cert = directory / f"{name}.crt"
        key = directory / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        paths[name] = (cert, key)
    certificates = H3Certificates(
        paths["default"][0],
        paths["default"][1],
        [(("shop.test", "*.shop.test"), paths["shop"][0], paths["shop"][1])],
    )
    return H3PKI(ca_path, certificates)


class RecordingCounters(NullCounters):
    """Counts what a worker's shared-memory block would (single-threaded use only)."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.bytes_in = 0
        self.responses: list[tuple[int, int]] = []

    def response(self, status: int, sent: int) -> None:
        self.responses.append((status, sent))

    def received(self, size: int) -> None:
        self.bytes_in += size

    def connection_opened(self) -> None:
        self.opened += 1

    def connection_closed(self) -> None:
        self.closed += 1


@dataclass
class H3Harness:
    port: int
    server: H3Server
    ctx: WorkerContext
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

    def shutdown(self) -> None:
        self.call(self.server.shutdown)


@contextmanager
def serve_h3(
    handler: HandlerFn,
    pki: H3PKI,
    limits: H3Limits | None = None,
    timeouts: Timeouts | None = None,
    parser_limits: ParserLimits | None = None,
    counters: SlotCounters | None = None,
    access_log: AccessLog | None = None,
    certificates: H3Certificates | None = None,
) -> Iterator[H3Harness]:
    """Run an H3Server in a thread; yields the harness (port, server, context)."""
    loop = uvloop.new_event_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    ctx = WorkerContext(
        handler=_Handler(handler),
        parser_factory=HttptoolsParser,  # unused by HTTP/3
        limits=parser_limits or ParserLimits(),
        timeouts=timeouts or Timeouts(),
        access_log=access_log or AccessLog("off"),
        scheme="https",
        counters=counters or NullCounters(),
    )
    started: Future[H3Server] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                start_h3(sock, ctx, certificates or pki.certificates, limits or H3Limits())
            )
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(server)
        loop.run_forever()

        async def close() -> None:
            server.close()
            await asyncio.sleep(0.05)

        loop.run_until_complete(close())
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    server = started.result(10)
    try:
        yield H3Harness(port, server, ctx, loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
