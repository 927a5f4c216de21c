"""Serve the real H3Server on a loopback UDP port from a thread, with test handlers.

The HTTP/3 counterpart of ``tests/support/inproc.py``: a worker-like event loop (uvloop,
as in production) in a thread, one UDP socket on 127.0.0.1 port 0, ``start_h3`` on it and
a handler function instead of the pipeline. Certificates come from trustme.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
import uvloop

from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.protocol.h1 import HttptoolsParser
from bext.protocol.h3_limits import H3Limits
from bext.shm.counters import NullCounters, SlotCounters
from bext.worker.context import Timeouts, WorkerContext
from bext.worker.h3_server import H3Certificates, H3Server, start_h3
from tests.support.inproc import FnHandler, HandlerFn, LoopCalls, RecordingCounters, loop_thread

__all__ = ["H3PKI", "H3Harness", "RecordingCounters", "make_pki", "serve_h3"]


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


@dataclass
class H3Harness(LoopCalls):
    port: int
    server: H3Server
    ctx: WorkerContext
    loop: asyncio.AbstractEventLoop

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
        handler=FnHandler(handler),
        parser_factory=HttptoolsParser,  # unused by HTTP/3
        limits=parser_limits or ParserLimits(),
        timeouts=timeouts or Timeouts(),
        access_log=access_log or AccessLog("off"),
        scheme="https",
        counters=counters or NullCounters(),
    )

    def start() -> Awaitable[H3Server]:
        return start_h3(sock, ctx, certificates or pki.certificates, limits or H3Limits())

    with loop_thread(loop, start, H3Server.close) as server:
        yield H3Harness(port, server, ctx, loop)
