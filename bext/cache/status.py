"""The ``Cache-Status`` response field (RFC 9211), serialised as RFC 8941 list members.

Each cache a response went through appends one member: its name, then parameters. bext's
member is named ``bext``; the ``key`` parameter is never sent (it would reveal the key).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

CACHE_NAME = "bext"
"""The cache's identifier in its ``Cache-Status`` member (RFC 9211 §2)."""

_SF_INTEGER_MAX = 999_999_999_999_999


class Fwd(enum.Enum):
    """Why the request went forward to the next hop (RFC 9211 §2.2)."""

    BYPASS = "bypass"
    METHOD = "method"
    URI_MISS = "uri-miss"
    VARY_MISS = "vary-miss"
    MISS = "miss"
    REQUEST = "request"
    STALE = "stale"
    PARTIAL = "partial"


def _sf_string(value: str) -> str:
    """An RFC 8941 §4.1.6 sf-string: printable ASCII only (others become ``?``), escaped."""
    chars = (c if 0x20 <= ord(c) < 0x7F else "?" for c in value)
    return '"' + "".join("\\" + c if c in '\\"' else c for c in chars) + '"'


def _sf_integer(value: int) -> str:
    return str(max(-_SF_INTEGER_MAX, min(_SF_INTEGER_MAX, value)))


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """One ``Cache-Status`` list member (RFC 9211 §2).

    ``hit`` (§2.1) and ``fwd`` (§2.2) should not both be set; ``fwd_status`` (§2.3) is the
    status the next hop returned, ``ttl`` (§2.4) the remaining freshness in whole seconds
    (negative when stale), ``stored`` (§2.5) whether the forwarded response was stored,
    ``collapsed`` (§2.6) whether the request was coalesced with another, ``detail`` (§2.8)
    free text.
    """

    hit: bool = False
    fwd: Fwd | None = None
    fwd_status: int | None = None
    ttl: int | None = None
    stored: bool = False
    collapsed: bool = False
    detail: str | None = None
    name: str = CACHE_NAME

    def serialise(self) -> bytes:
        """The member as RFC 8941 §4.1.3 serialises an Item with Parameters."""
        if (
            self.hit
            and self.fwd is None
            and self.ttl is not None
            and not (self.stored or self.collapsed or self.detail or self.fwd_status)
            and self.name == CACHE_NAME
        ):
            return b"bext;hit;ttl=%d" % max(-_SF_INTEGER_MAX, min(_SF_INTEGER_MAX, self.ttl))
        parts = [self.name]
        if self.hit:
            parts.append("hit")
        if self.fwd is not None:
            parts.append(f"fwd={self.fwd.value}")
        if self.fwd_status is not None:
            parts.append(f"fwd-status={_sf_integer(self.fwd_status)}")
        if self.ttl is not None:
            parts.append(f"ttl={_sf_integer(self.ttl)}")
        if self.stored:
            parts.append("stored")
        if self.collapsed:
            parts.append("collapsed")
        if self.detail is not None:
            parts.append(f"detail={_sf_string(self.detail)}")
        return ";".join(parts).encode("ascii")


def append_cache_status(existing: bytes | None, member: CacheStatus) -> bytes:
    """The ``Cache-Status`` value with bext's member appended last (RFC 9211 §2: the cache
    closest to the user comes last)."""
    own = member.serialise()
    existing = existing.strip(b" \t") if existing else b""
    return existing + b", " + own if existing else own
