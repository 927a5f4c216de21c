"""A worker process: one event loop serving the listening sockets of its slot.

Runs right after ``fork()`` in the child. Everything heavy was imported by the master before
forking, so workers share those pages copy-on-write; ``gc.freeze()`` keeps the collector
from touching (and so copying) them.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bext.config import Config
from bext.handlers.https_redirect import HttpsRedirect
from bext.limits.connections import ConnectionLimits
from bext.observe.accesslog import AccessLog
from bext.observe.errorlog import log, set_role
from bext.observe.otlp import STOP_TIMEOUT, span_recorder, start_exporter
from bext.protocol.events import ParserLimits
from bext.protocol.h1 import HttptoolsParser
from bext.protocol.h1_ref import H11Parser
from bext.runtime.spec import HTTP, HTTPS, QUIC, TLSMaterial, WorkerSpec
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.layout import Segment
from bext.shm.peers import PeerTable
from bext.worker.accept import AcceptGate, Acceptor
from bext.worker.context import RequestHandler, RequestParser, Timeouts, WorkerContext
from bext.worker.h1_connection import H1Connection

if TYPE_CHECKING:  # aioquic is imported only with HTTP/3 on
    from bext.worker.h3_server import H3Certificates, H3Server

try:
    from uvloop import new_event_loop as uvloop_new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop_new_event_loop = None  # type: ignore[assignment]

try:
    from setproctitle import setproctitle
except ImportError:  # pragma: no cover

    def setproctitle(title: str) -> None:
        pass


UNLIMITED_BODY = 1 << 62
"""``max_body_size = 0`` means no limit, as nginx's ``client_max_body_size 0``."""

PARSER_ENGINES: dict[str, Callable[[ParserLimits], RequestParser]] = {
    "httptools": HttptoolsParser,
    "h11": H11Parser,
}


def parser_factory(engine: str) -> Callable[[ParserLimits], RequestParser]:
    return PARSER_ENGINES["httptools" if engine == "auto" else engine]


def build_context(
    config: Config,
    handler: RequestHandler,
    access_log: AccessLog,
    counters: SlotCounters | None = None,
) -> WorkerContext:
    """The worker's context around the pipeline and access log the master built."""
    server = config.server
    counters = counters or NullCounters()
    return WorkerContext(
        handler=handler,
        counters=counters,
        parser_factory=parser_factory(server.http1_engine),
        limits=ParserLimits(
            max_uri_length=server.max_uri_length,
            max_header_size=server.max_header_size,
            max_headers=server.max_headers,
            max_body_size=server.max_body_size or UNLIMITED_BODY,
        ),
        timeouts=Timeouts(
            header=server.header_timeout,
            body=server.body_timeout,
            keepalive=server.keepalive_timeout,
            send=server.send_timeout,
            body_min_rate=server.body_min_rate,
            lingering=server.lingering_time,
        ),
        access_log=access_log,
        server_tokens=server.server_tokens,
        max_keepalive_requests=server.max_keepalive_requests,
        max_connections=server.max_connections,
        h2=server.http2,
        otlp=span_recorder(config.metrics),
    )


def connection_limits(config: Config, ctx: WorkerContext, segment: Segment) -> ConnectionLimits:
    """``max_connections`` and ``max_connections_per_ip`` for this worker."""
    server = config.server
    per_ip = server.max_connections_per_ip
    return ConnectionLimits(
        ctx.connections,
        ctx.counters,
        server.max_connections,
        per_ip,
        PeerTable(segment, os.getpid()) if per_ip else None,
        server.trusted_proxies,
    )


def worker_main(spec: WorkerSpec) -> int:
    """Entry point in the forked child; returns the process exit code."""
    setproctitle(f"bext: worker {spec.slot} (gen {spec.generation})")
    set_role(f"worker {spec.slot}")
    worker = Worker(spec)
    try:
        with asyncio.Runner(loop_factory=uvloop_new_event_loop) as runner:
            return runner.run(worker.serve())
    finally:
        worker.ctx.counters.publish()  # the last counts, closed connections included


def listener_contexts(ctx: WorkerContext, config: Config, tls_port: int) -> ListenerContexts:
    """The per-listener variants of ``ctx``: plain HTTP and TLS.

    On TLS listeners every response carries HSTS (when configured) and, with HTTP/3 on,
    ``Alt-Svc`` so browsers move to QUIC. With ``redirect_http`` the plain listener
    answers everything with a redirect to HTTPS instead of running the pipeline.
    """
    tls = config.server.tls
    if tls is None:
        return ListenerContexts(ctx, None)
    extra: list[tuple[bytes, bytes]] = []
    if tls.hsts is not None:
        extra.append((b"Strict-Transport-Security", b"max-age=%d" % int(tls.hsts)))
    if tls.http3:
        extra.append((b"Alt-Svc", b'h3=":%d"; ma=86400' % tls_port))
    secure = ctx.for_listener("https", extra_headers=extra)
    plain = ctx.for_listener("http", HttpsRedirect(tls_port)) if tls.redirect_http else ctx
    return ListenerContexts(plain, secure)


@dataclass(frozen=True)
class ListenerContexts:
    plain: WorkerContext
    secure: WorkerContext | None


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.config = config = spec.config
        counters = SlotCounters(spec.segment, spec.slot, spec.generation, os.getpid())
        # Compiled by the master before the fork; only the counters are this worker's.
        spec.pipeline.bind_counters(counters)
        self.ctx = build_context(config, spec.pipeline, spec.access_log, counters)
        self.ctx.shared.limits = connection_limits(config, self.ctx, spec.segment)
        self.master_pid = os.getppid()
        self.stop_requested: asyncio.Event | None = None
        self.fast = False
        self.h3_servers: list[H3Server] = []
        self.gate: AcceptGate | None = None

    async def _listen(self) -> AcceptGate:
        """Start serving every socket of this slot, each with its protocol.

        TCP listeners are served by this worker's own acceptors (:mod:`bext.worker.accept`),
        which stop accepting while the worker holds ``max_connections``.
        """
        spec = self.spec
        contexts = listener_contexts(self.ctx, self.config, spec.tls_port)
        plain = contexts.plain
        assert self.ctx.shared.limits is not None
        gate = AcceptGate(self.ctx.shared.limits)
        for kind, sock in spec.sockets:
            if kind == HTTP:
                gate.add(Acceptor(gate, sock, lambda: H1Connection(plain)))
                continue
            secure = contexts.secure
            assert spec.tls is not None and secure is not None
            if kind == HTTPS:
                gate.add(Acceptor.tls(gate, sock, secure, spec.tls.context))
            elif kind == QUIC:
                # Imported only with HTTP/3 on (by the master first: see build_generation).
                from bext.worker.h3_server import start_h3

                self.h3_servers.append(
                    await start_h3(
                        sock, secure, h3_certificates(spec.tls), self.config.server.http3
                    )
                )
        return gate

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        ctx = self.ctx
        gate = self.gate = await self._listen()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, False)
        loop.add_signal_handler(signal.SIGQUIT, self._request_stop, True)
        loop.add_signal_handler(signal.SIGINT, self._request_stop, True)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        housekeeping = loop.create_task(self._housekeeping())
        exporter = start_exporter(ctx.otlp, self.config.metrics, ctx.counters.metrics)
        gc.collect()
        gc.freeze()
        os.write(self.spec.ready_fd, b"r")
        os.close(self.spec.ready_fd)

        await self.stop_requested.wait()
        setproctitle(f"bext: worker {self.spec.slot} (gen {self.spec.generation}, draining)")
        gate.close()  # stop accepting; the master's copies keep the queues alive
        ctx.stopping = True
        if not self.fast:
            deadline = loop.time() + self.config.server.graceful_timeout
            for conn in list(ctx.connections):
                conn.shutdown()
            for h3 in self.h3_servers:
                h3.shutdown()
            while (ctx.connections or any(h3.active for h3 in self.h3_servers)) and (
                loop.time() < deadline
            ):
                await asyncio.sleep(0.05)
        for conn in list(ctx.connections):
            conn.abort()
        for h3 in self.h3_servers:
            h3.close()
        if exporter is not None:  # the last spans, best effort (not on a fast stop)
            await exporter.stop(0.0 if self.fast else STOP_TIMEOUT)
        housekeeping.cancel()
        ctx.access_log.flush()
        self.spec.pipeline.close()
        return 0

    def _request_stop(self, fast: bool) -> None:
        self.fast = self.fast or fast
        assert self.stop_requested is not None
        self.stop_requested.set()

    def _reopen_logs(self) -> None:
        self.ctx.access_log.flush()
        self.ctx.access_log.reopen()

    async def _housekeeping(self) -> None:
        """Once a second: beat, flush the access log; leave if the master is gone."""
        while True:
            await asyncio.sleep(1.0)
            self.ctx.counters.heartbeat()
            self.ctx.access_log.flush()
            if self.gate is not None:
                self.gate.room()  # a safety net: accepting resumes once there is room
            if os.getppid() != self.master_pid:
                log.error("master %d is gone; stopping", self.master_pid)
                self._request_stop(False)


def h3_certificates(tls: TLSMaterial) -> H3Certificates:
    """The HTTP/3 engine loads the same PEM files as the TCP listener's context."""
    from bext.worker.h3_server import H3Certificates

    resolved = tls.certificates
    return H3Certificates(resolved.default_cert, resolved.default_key, resolved.sni_paths())
