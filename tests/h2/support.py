"""Shared pieces of the HTTP/2 tests: certificates, counters that remember."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.h2.h2client import Reply
from tests.support.inproc import RecordingCounters

__all__ = ["PKI", "RecordingCounters", "assert_stream_error"]


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


def assert_stream_error(reply: Reply, engine: str, *, bext_checks: bool = False) -> None:
    """A malformed request's stream error (RFC 9113 §8.1.1), as the engine gives it.

    nghttp2 validates request header sections itself (pseudo-header faults, uppercase
    names, connection-specific fields, ``te``, padded values, bad trailers, content-length
    mismatches) and resets the stream with RST_STREAM(PROTOCOL_ERROR) before bext sees it,
    so no 400 says why: ngh2 has no switch to leave those checks to bext. h2's checks are
    off, so there bext answers 400 first. ``bext_checks``: a fault nghttp2 lets through, so
    bext's own 400 comes on both engines.
    """
    assert reply.reset == 0x1  # PROTOCOL_ERROR, never END_STREAM
    assert not any("END_STREAM" in frame.flags for frame in reply.frames)
    if engine == "nghttp2" and not bext_checks:
        assert not reply.headers and not reply.body  # reset by nghttp2, unanswered
    else:
        assert reply.status == 400 and reply.body.startswith(b"400 Bad Request")
