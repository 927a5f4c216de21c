"""Shared pieces of the HTTP/2 tests: certificates, counters that remember."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from bext.shm.counters import NullCounters


@dataclass(frozen=True)
class PKI:
    ca: trustme.CA
    cert: trustme.LeafCert
    ca_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A fresh server context (the harness sets ALPN on it)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        context.set_alpn_protocols(alpn or ["h2"])
        return context


class RecordingCounters(NullCounters):
    """Counts what a worker's shared-memory block would (the server thread writes)."""

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
