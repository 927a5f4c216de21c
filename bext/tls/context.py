"""The server-side `ssl.SSLContext` for bext's TCP listener (HTTP/1.1 and HTTP/2 over TLS).

Build it in the master, BEFORE forking the workers. OpenSSL generates the session-ticket
keys (the keys that encrypt the resumption state handed to clients) when a context is
created and keeps them in that context's memory. Workers forked afterwards inherit the
very same keys, so a ticket issued by one worker is accepted by every other: a client
resumes its TLS session (an abbreviated handshake, no certificate signature) whichever
worker SO_REUSEPORT hands its next connection to. A context built in each worker would
have its own random keys and resumption would only work by luck (1 in N workers).
Tickets are sealed with the keys of the context the connection started on (this default
one), even when the SNI callback switches to a per-host context, so SNI hosts resume too.
tests/tls/test_resumption.py checks all this with forked processes, TLS 1.2 and 1.3.

Consequences: the keys live as long as the context; a reload builds a new context, which
rotates them (clients with old tickets simply do one full handshake). Python exposes no
ticket-key callback, so that rebuild is the rotation mechanism. OpenSSL reseeds its
random generator after fork on its own, so forked workers do not share other randomness.
Server-side session-ID caching stays per process; tickets are what work across workers,
which is why OP_NO_TICKET must stay off.

Policy, close to Mozilla's "intermediate" profile:

- TLS 1.2 minimum, TLS 1.3 enabled. TLS 1.0/1.1 are refused (RFC 8996).
- TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only (AES-GCM, ChaCha20-Poly1305),
  for ECDSA and RSA certificates. No CBC (padding-oracle history), no static-RSA key
  exchange (no forward secrecy), no finite-field DHE (it needs DH parameters loaded, is
  slower, and every client in use supports ECDHE). TLS 1.3 suites cannot be
  set from Python; OpenSSL's defaults are all AEAD.
- OP_CIPHER_SERVER_PREFERENCE is turned off (Python's default turns it on): every suite
  offered is strong, and the client knows best whether it has AES hardware, so a phone
  without it can pick ChaCha20. This is Mozilla's recommendation for these lists.
- Key-exchange groups are OpenSSL's defaults (X25519, P-256, ...); `set_ecdh_curve` is
  not called because in Python it narrows the list to a single curve.
- No compression (CRIME), no renegotiation (a DoS lever, and HTTP/2 forbids it).
- ALPN with the worker's list; each SNI context repeats the same settings, because
  OpenSSL takes ALPN and certificate from the context the SNI callback switches to.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

from bext.tls.certs import (
    ResolvedCertificates,
    SNITable,
    TLSSetupError,
    refuse_password,
    ssl_reason,
)

__all__ = ["DEFAULT_ALPN", "TLS12_CIPHERS", "build_server_context"]

DEFAULT_ALPN = ("h2", "http/1.1")

_Callback = Callable[[ssl.SSLObject | ssl.SSLSocket, str | None, ssl.SSLContext], None]

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def build_server_context(
    resolved: ResolvedCertificates, alpn: Sequence[str] = DEFAULT_ALPN
) -> ssl.SSLContext:
    """The listener's context: default certificate, plus an SNI callback when there are
    per-host certificates (exact names and one-label wildcards, case-insensitive; unknown
    or absent names get the default). Call once in the master, before forking.

    Raises `TLSSetupError` (with the config key) if OpenSSL refuses a certificate pair,
    e.g. because a file changed since `resolve_certificates` checked it.
    """
    default = _new_context(alpn)
    _load(default, resolved.default_cert, resolved.default_key, "server.tls")
    if resolved.sni:
        contexts: list[tuple[tuple[str, ...], ssl.SSLContext]] = []
        for entry in resolved.sni:
            context = _new_context(alpn)
            _load(context, entry.cert, entry.key, entry.where)
            contexts.append((entry.hosts, context))
        default.sni_callback = _sni_callback(SNITable(contexts))
    return default


def _new_context(alpn: Sequence[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options &= ~ssl.OP_NO_TICKET  # tickets are what resume across workers
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _load(context: ssl.SSLContext, cert: Path, key: Path, where: str) -> None:
    try:
        context.load_cert_chain(cert, key, password=refuse_password)
    except ssl.SSLError as exc:
        raise TLSSetupError(
            [f"{where}: OpenSSL refuses {cert} with {key}: {ssl_reason(exc)}"]
        ) from None
    except OSError as exc:
        raise TLSSetupError([f"{where}: cannot read {cert} or {key}: {exc.strerror}"]) from None


def _sni_callback(table: SNITable[ssl.SSLContext]) -> _Callback:
    """Switch the connection to the context of the host the client asked for, if any."""

    def choose(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        chosen = table.lookup(server_name)
        if chosen is not None:
            connection.context = chosen

    return choose
