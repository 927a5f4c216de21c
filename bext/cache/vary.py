"""The secondary cache key from ``Vary`` (RFC 9111 §4.1, RFC 9110 §12.5.5).

A stored response keeps the names its ``Vary`` lists and, for each, the value the request
that produced it had. A later request matches when every value is the same after the
normalisation §4.1 allows: repeated field lines combined with ``", "``, whitespace around
each line stripped; an absent field only matches an absent field. ``Vary: *`` never matches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bext.cache._fields import field_lines, split_list
from bext.protocol.events import Headers


def vary_names(response_headers: Headers) -> tuple[bytes, ...] | None:
    """The lowercase, deduplicated field names of ``Vary`` in order (RFC 9110 §12.5.5);
    ``None`` for ``Vary: *``."""
    names: dict[bytes, None] = {}
    for line in field_lines(response_headers, b"vary"):
        for member in split_list(line):
            if member == b"*":
                return None
            names[member.lower()] = None
    return tuple(names)


def normalised_value(request_headers: Headers, name: bytes) -> bytes | None:
    """The request's value of ``name`` for Vary matching (RFC 9111 §4.1): lines stripped and
    combined with ``", "``; ``None`` when absent."""
    lines = field_lines(request_headers, name.lower())
    if not lines:
        return None
    return b", ".join(lines)


@dataclass(frozen=True, slots=True)
class SecondaryKey:
    """The ``Vary`` names of a stored response and the request values they had (§4.1).

    ``star`` is true for ``Vary: *``: such a key matches no request.
    """

    fields: tuple[tuple[bytes, bytes | None], ...] = ()
    star: bool = False

    def matches(self, request_headers: Headers) -> bool:
        """Whether a request selects the stored response (RFC 9111 §4.1)."""
        if self.star:
            return False
        return all(normalised_value(request_headers, name) == value for name, value in self.fields)

    def digest(self) -> str:
        """A stable hex digest of the key, for a store's index; ``""`` when nothing varies.

        Names are sorted so that ``Vary: a, b`` and ``Vary: b, a`` give the same digest.
        """
        if self.star:
            return "*"
        if not self.fields:
            return ""
        h = hashlib.sha256()
        for name, value in sorted(self.fields, key=lambda item: item[0]):
            h.update(name + b"\x00")
            h.update(b"\x01" + value if value is not None else b"\x02")
            h.update(b"\x00")
        return h.hexdigest()


def secondary_key(response_headers: Headers, request_headers: Headers) -> SecondaryKey:
    """The secondary key of a response to a request (RFC 9111 §4.1)."""
    names = vary_names(response_headers)
    if names is None:
        return SecondaryKey(star=True)
    return SecondaryKey(tuple((name, normalised_value(request_headers, name)) for name in names))
