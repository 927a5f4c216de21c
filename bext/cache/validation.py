"""Validation of stored responses with the origin (RFC 9111 §4.3, RFC 9110 §8.8, §13).

:func:`conditional_headers` builds the validators to send, :func:`revalidation_request`
the whole header list of the conditional request, :func:`matches_not_modified` whether a
304 applies to the stored response (§4.3.4) and :func:`freshen_headers` the stored header
list updated from it (§3.2).
"""

from __future__ import annotations

from bext.cache._fields import first_line
from bext.cache.storable import HOP_BY_HOP, connection_options
from bext.http.date import parse_http_date
from bext.protocol.events import Headers

CONDITIONAL_FIELDS = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range"}
)
"""Request preconditions (RFC 9110 §13.1) a cache replaces with its own when validating."""

NOT_UPDATED = HOP_BY_HOP | frozenset({b"content-length"})
"""Fields a 304 never replaces in the stored response (RFC 9111 §3.2)."""


def conditional_headers(stored_headers: Headers) -> Headers:
    """The validators for a conditional request on a stored response (RFC 9111 §4.3.1):
    ``If-None-Match`` with the stored ``ETag`` and ``If-Modified-Since`` with a valid stored
    ``Last-Modified`` (both when both exist)."""
    out: Headers = []
    etag = first_line(stored_headers, b"etag")
    if etag:
        out.append((b"if-none-match", etag))
    last_modified = first_line(stored_headers, b"last-modified")
    if last_modified and parse_http_date(last_modified) is not None:
        out.append((b"if-modified-since", last_modified))
    return out


def revalidation_request(request_headers: Headers, stored_headers: Headers) -> Headers:
    """The header list of the request sent to validate a stored response (RFC 9111 §4.3.1).

    The client's own preconditions and ``Range`` are removed (the cache validates its full
    stored response and evaluates the client's conditions itself afterwards), then the stored
    response's validators are added.
    """
    drop = CONDITIONAL_FIELDS | {b"range"}
    kept = [(name, value) for name, value in request_headers if name.lower() not in drop]
    return kept + conditional_headers(stored_headers)


def is_weak(etag: bytes) -> bool:
    """Whether an entity-tag is weak (``W/`` prefix, RFC 9110 §8.8.3)."""
    return etag.startswith(b"W/")


def opaque_tag(etag: bytes) -> bytes:
    """The opaque-tag of an entity-tag, without the weakness indicator (RFC 9110 §8.8.3)."""
    return etag[2:] if is_weak(etag) else etag


def strong_match(a: bytes, b: bytes) -> bool:
    """Strong comparison (RFC 9110 §8.8.3.2): both strong and identical."""
    return not is_weak(a) and not is_weak(b) and a == b


def weak_match(a: bytes, b: bytes) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): opaque-tags identical, weakness ignored."""
    return opaque_tag(a) == opaque_tag(b)


def matches_not_modified(stored_headers: Headers, not_modified_headers: Headers) -> bool:
    """Whether a 304 selects the stored response for freshening (RFC 9111 §4.3.4).

    A strong ``ETag`` in the 304 selects a stored response with the same strong one; a weak
    one selects by weak comparison; with no ``ETag`` but a ``Last-Modified``, the stored
    ``Last-Modified`` must be the same date; with no validator at all, only a stored response
    that has none either is selected.
    """
    new_etag = first_line(not_modified_headers, b"etag")
    stored_etag = first_line(stored_headers, b"etag")
    if new_etag:
        if stored_etag is None:
            return False
        if is_weak(new_etag):
            return weak_match(new_etag, stored_etag)
        return strong_match(new_etag, stored_etag)
    new_lm = first_line(not_modified_headers, b"last-modified")
    stored_lm = first_line(stored_headers, b"last-modified")
    if new_lm:
        if stored_lm is None:
            return False
        new_date, stored_date = parse_http_date(new_lm), parse_http_date(stored_lm)
        if new_date is None or stored_date is None:
            return new_lm == stored_lm
        return new_date == stored_date
    return not stored_etag and not stored_lm


def freshen_headers(stored_headers: Headers, not_modified_headers: Headers) -> Headers:
    """The stored header list updated with a 304's fields (RFC 9111 §3.2, §4.3.4).

    Every field the 304 carries replaces all stored lines of the same name (in the stored
    position of its first line, extra lines appended after), except ``Content-Length``,
    hop-by-hop fields and fields named by the 304's ``Connection``. Names are compared
    case-insensitively.
    """
    skip = NOT_UPDATED | connection_options(not_modified_headers)
    updates: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in not_modified_headers:
        lower = name.lower()
        if lower not in skip:
            updates.setdefault(lower, []).append((name, value))
    out: Headers = []
    placed: set[bytes] = set()
    for name, value in stored_headers:
        lower = name.lower()
        if lower not in updates:
            out.append((name, value))
        elif lower not in placed:
            out.extend(updates[lower])
            placed.add(lower)
    for lower, lines in updates.items():
        if lower not in placed:
            out.extend(lines)
    return out
