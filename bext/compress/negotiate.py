"""Which coding the compression phase produces, from ``Accept-Encoding``.

The parsing and the rules live in :mod:`bext.http.accept_encoding` (shared with static
files' precompressed variants); this picks the best acceptable coding, or None when the
response should go out as it is (no header, nothing acceptable, identity preferred).
"""

from __future__ import annotations

from bext.http.accept_encoding import BROTLI, GZIP, IDENTITY, preference

__all__ = ["BROTLI", "GZIP", "choose_encoding", "negotiate"]


def choose_encoding(accept_encoding: bytes) -> str | None:
    """The coding for one (possibly comma-joined) ``Accept-Encoding`` value."""
    best = preference(accept_encoding)[0]
    return None if best == IDENTITY else best


def negotiate(header_values: list[bytes]) -> str | None:
    """The coding for a request carrying these ``Accept-Encoding`` values (maybe none)."""
    if not header_values:
        return None
    joined = header_values[0] if len(header_values) == 1 else b",".join(header_values)
    return choose_encoding(joined)
