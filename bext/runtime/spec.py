"""What a forked worker starts from: its spec, the TLS material, the listener kinds.

Built by the master before it forks (:mod:`bext.master.arbiter`), read by the worker
(:mod:`bext.worker.main`). This module depends on neither side.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bext.config import Config
from bext.http.message import Request, Response
from bext.observe.accesslog import AccessLog
from bext.shm.counters import SlotCounters
from bext.shm.layout import Segment

if TYPE_CHECKING:  # cryptography is loaded only for a TLS listener
    from bext.tls.certs import ResolvedCertificates

HTTP = "http"
HTTPS = "https"
QUIC = "quic"
"""Listener kinds: plain TCP, TLS over TCP, and UDP for QUIC (HTTP/3) on the TLS port."""


@dataclass(frozen=True)
class TLSMaterial:
    """A configuration's TLS setup, prepared by the master before it forks workers."""

    context: ssl.SSLContext
    """For the TCP listener (HTTP/1.1 and HTTP/2, chosen by ALPN)."""
    certificates: ResolvedCertificates
    """The same PEM files, for the HTTP/3 engine (aioquic has its own TLS stack)."""


class CompiledPipeline(Protocol):
    """The request pipeline as the master compiled it (:class:`bext.worker.pipeline.Pipeline`)."""

    def handle(self, request: Request) -> Response | Awaitable[Response]: ...

    def bind_counters(self, counters: SlotCounters) -> None: ...

    def close(self) -> None: ...


@dataclass
class WorkerSpec:
    """Everything a forked worker starts from."""

    slot: int
    generation: int
    config: Config
    sockets: list[tuple[str, socket.socket]]
    """This slot's listening sockets with their kind (http, https, quic), one per listener;
    the master keeps its copies."""
    ready_fd: int
    segment: Segment
    pipeline: CompiledPipeline
    r"""Built by the master before the fork (shared copy-on-write); the worker gives it its
    counters with ``bind_counters`` (which also opens what must be opened after fork: the
    cache store), serves with it, and closes it on the way out."""
    access_log: AccessLog
    """Opened by the master (so an unopenable path refuses the generation at once); the
    worker writes to its inherited copy and reopens it on SIGUSR1."""
    tls: TLSMaterial | None = None
    tls_port: int = 0
    """The TLS port actually bound (it differs from the config's when that says 0)."""


__all__ = ["HTTP", "HTTPS", "QUIC", "CompiledPipeline", "TLSMaterial", "WorkerSpec"]
