"""What a rate limit counts by: the client address after ``trusted_proxies``, or a header.

Keys are hashed before they reach shared memory (a 63-bit blake2b of the limit's name and
the key), so the segment never holds an address, a header value or a limit's name, and
two limits never share a bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from bext.http.message import Request
from bext.proxy.headers import TrustedProxies, client_addresses

HEADER_PREFIX = "header:"

KeyFunction = Callable[[Request], bytes]


def client_ip(request: Request, trusted: TrustedProxies) -> str:
    """The client's address as the proxy phase works it out (the same function), noted on
    ``request.notes.client_ip`` for later phases and the log."""
    notes = request.notes
    known = notes.client_ip
    if known is None:
        known = notes.client_ip = client_addresses(request, trusted)[1].decode("latin-1")
    return known


def key_function(key: str, trusted_proxies: Sequence[str]) -> KeyFunction:
    """The function giving a request's key for a ``[limits.NAME] key`` setting.

    ``"client_ip"``: the address after ``trusted_proxies``. ``"header:NAME"``: the first
    value of that header; a request without it counts under its client address (a client
    must not escape a limit by leaving the header out).
    """
    trusted = TrustedProxies(trusted_proxies)

    def by_address(request: Request) -> bytes:
        return b"a\0" + client_ip(request, trusted).encode("latin-1")

    if not key.startswith(HEADER_PREFIX):
        return by_address
    name = key[len(HEADER_PREFIX) :].lower().encode("latin-1")

    def by_header(request: Request) -> bytes:
        value = request.header(name)
        if value is None:
            return by_address(request)
        return b"h\0" + value

    return by_header


class KeyHasher:
    """63-bit keys for one limit: positive, never 0 (an empty table entry)."""

    __slots__ = ("_prefix",)

    def __init__(self, limit_name: str) -> None:
        self._prefix = hashlib.blake2b(limit_name.encode("utf-8") + b"\0", digest_size=8,
                                       person=b"bext-rate")  # fmt: skip

    def __call__(self, key: bytes) -> int:
        digest = self._prefix.copy()
        digest.update(key)
        return int.from_bytes(digest.digest(), "big") >> 1 or 1
