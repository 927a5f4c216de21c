"""Validators and conditional requests (RFC 9110 section 8.8 and 13).

ETags are strong and built from what ``stat`` says, ``"<mtime_ns hex>-<size hex>"`` (plus
``-br`` / ``-gz`` for a precompressed variant, so each representation of a URL has its
own), like nginx's: every worker and every server behind a load balancer computes the
same tag for the same deployed file without hashing it, and any rewrite of the file
changes the tag.

Preconditions are evaluated in the order RFC 9110 section 13.2.2 prescribes: If-Match,
else If-Unmodified-Since (412 when false), then If-None-Match, else If-Modified-Since
(304 when false, GET and HEAD only). Dates that do not parse are ignored, as the RFC
requires; an If-None-Match list that does not parse matches nothing (the client then
simply gets the full response).

The common revalidation is a browser echoing exactly the ETag or Last-Modified it was
given, so both are tried as a byte comparison before any parsing.
"""

from __future__ import annotations

from bext.http.date import parse_http_date

__all__ = [
    "etag_for",
    "if_range_matches",
    "list_matches",
]


def etag_for(mtime_ns: int, size: int, suffix: str = "") -> bytes:
    """The strong ETag (with its quotes) of a file version; ``suffix`` names a variant."""
    return b'"%x-%x%s"' % (mtime_ns, size, suffix.encode("ascii"))


def _tags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """Parse an entity-tag list into ``(weak, opaque-tag with quotes)``; None if malformed.

    A real scanner rather than a split on commas: a comma is a legal character inside an
    opaque tag.
    """
    tags: list[tuple[bool, bytes]] = []
    pos = 0
    end = len(value)
    while True:
        while pos < end and value[pos] in b" \t,":
            pos += 1
        if pos >= end:
            return tags
        weak = value.startswith(b"W/", pos)
        if weak:
            pos += 2
        if pos >= end or value[pos] != 0x22:  # '"'
            return None
        close = value.find(b'"', pos + 1)
        if close < 0:
            return None
        tags.append((weak, value[pos : close + 1]))
        pos = close + 1
        if pos < end and value[pos] not in b" \t,":
            return None


def list_matches(value: bytes, etag: bytes, weak_compare: bool) -> bool:
    """Does an If-None-Match / If-Match value match ``etag`` (our strong tag)?

    ``*`` matches any existing representation. If-None-Match uses the weak comparison
    (``W/"x"`` matches ``"x"``), If-Match the strong one (weak tags never match).
    """
    if value == etag:
        return True
    if value.strip(b" \t") == b"*":
        return True
    tags = _tags(value)
    if not tags:
        return False
    return any(opaque == etag and (weak_compare or not weak) for weak, opaque in tags)


def if_range_matches(value: bytes, etag: bytes, last_modified: bytes, mtime_s: int) -> bool:
    """Does If-Range allow the Range to apply (RFC 9110 section 13.1.5)?

    An entity-tag must match strongly (a weak one never does); a date must equal the
    Last-Modified time exactly.
    """
    value = value.strip(b" \t")
    if value[:1] == b'"' or value[:2] == b"W/":
        return value == etag
    if value == last_modified:
        return True
    date = parse_http_date(value)
    return date is not None and date == mtime_s
