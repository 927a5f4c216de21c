"""Shared pieces of the HTTP/2 tests: certificates, counters that remember."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.support.inproc import RecordingCounters

__all__ = ["PKI", "RecordingCounters"]


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
