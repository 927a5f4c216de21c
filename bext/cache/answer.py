"""Answering a client from a stored response: ``Age``, ``Cache-Status``, the client's own
preconditions (304) and byte ranges (206), HEAD.

A cache evaluates ``If-None-Match`` and ``If-Modified-Since`` itself against what it
stored (RFC 9111 §4.3.2) and serves ``Range`` from a stored full response (RFC 9110
§14.2). The edge-only fields (``Cache-Tag``, ``Surrogate-Key``, ``Surrogate-Control``)
are stored, since later lookups read them, and never sent.
"""

from __future__ import annotations

from bext.cache._fields import first_line
from bext.cache.freshness import age_header_value
from bext.cache.status import CacheStatus
from bext.cache.store import StoredResponse
from bext.cache.tags import EDGE_ONLY_FIELDS
from bext.cache.validation import opaque_tag
from bext.http.date import parse_http_date
from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.protocol.events import Headers
from bext.static.conditional import list_matches
from bext.static.multipart import Byteranges
from bext.static.ranges import parse_range

NOT_SENT = EDGE_ONLY_FIELDS | {b"age", b"cache-status", b"content-length"}
"""Stored fields replaced or dropped on the way out."""

_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)
"""What a 304 carries of the stored response (RFC 9110 §15.4.5)."""


def client_headers(stored: Headers) -> Headers:
    """The stored fields a client may see (before ``Age`` and ``Cache-Status``)."""
    return [(name, value) for name, value in stored if name.lower() not in NOT_SENT]


PRECONDITION_FIELDS = frozenset({b"if-none-match", b"if-modified-since", b"range", b"if-range"})


def has_preconditions(headers: Headers) -> bool:
    """Whether the request has a field :func:`answer` evaluates (one pass, a set lookup
    per field)."""
    return any(name in PRECONDITION_FIELDS for name, _ in headers)


def answer(
    request: Request,
    stored: StoredResponse,
    age: float,
    status: CacheStatus,
    sent: Headers | None = None,
    hit_ttl: int | None = None,
) -> Response:
    """The response to ``request`` from ``stored``; takes over ``stored.fd``. ``sent`` is
    :func:`client_headers` of ``stored.headers`` when the caller has it already; with
    ``hit_ttl`` the status is a plain hit with that ttl, written without building it."""
    member = status.serialise() if hit_ttl is None else b"bext;hit;ttl=%d" % hit_ttl
    headers = _sent(client_headers(stored.headers) if sent is None else sent, age, member)
    if stored.status == 200 and not has_preconditions(request.headers):
        return _full(stored, headers)  # the common hit: no precondition, no Range
    if stored.status == 200 and _not_modified(request, stored.headers):
        stored.close()
        kept = [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_FIELDS]
        kept += headers[-2:]  # Age, Cache-Status
        return Response(304, kept)
    # HEAD gets the GET's response: the exchange sends its head (length included) only.
    if stored.status == 200:
        ranged = _ranged(request, stored, headers)
        if ranged is not None:
            return ranged
    return _full(stored, headers)


def plain_hit(stored: StoredResponse, age: float, sent: Headers, hit_ttl: int) -> Response:
    """:func:`answer` for a plain hit to a request without preconditions or ``Range``
    (:func:`has_preconditions` is False), which needs nothing else of the request."""
    return _full(stored, _sent(sent, age, b"bext;hit;ttl=%d" % hit_ttl))


def _sent(fields: Headers, age: float, cache_status: bytes) -> Headers:
    """A stored response's client fields with the ``Age`` and ``Cache-Status`` of this
    answer appended (last: a 304 and a 416 keep exactly these two)."""
    return [*fields, (b"Age", age_header_value(age)), (b"Cache-Status", cache_status)]


def _full(stored: StoredResponse, headers: Headers) -> Response:
    if stored.body is not None:
        response = Response(stored.status, headers, stored.body)
    else:
        assert stored.fd is not None
        fd, stored.fd = stored.fd, None
        response = Response(stored.status, headers, file=FileBody(fd, stored.offset, stored.length))
    # The same entry is the same bytes: compression of a hit is done once (item 7).
    response.identity = (stored.primary, stored.digest, stored.response_time, stored.length)
    return response


def _not_modified(request: Request, stored: Headers) -> bool:
    """The client's ``If-None-Match`` (weak comparison) or, without it,
    ``If-Modified-Since`` against the stored validators."""
    if_none_match = request.header(b"if-none-match")
    if if_none_match is not None:
        etag = first_line(stored, b"etag")
        return etag is not None and list_matches(if_none_match, opaque_tag(etag), True)
    since = request.header(b"if-modified-since")
    if since is None:
        return False
    last_modified = first_line(stored, b"last-modified")
    if last_modified is None:
        return False
    if since == last_modified:
        return True
    since_s, modified_s = parse_http_date(since), parse_http_date(last_modified)
    return since_s is not None and modified_s is not None and modified_s <= since_s


def _ranged(request: Request, stored: StoredResponse, headers: Headers) -> Response | None:
    """A 206 (or 416) for a ``Range`` request, or None to send the whole response."""
    value = request.header(b"range")
    if value is None or request.method != "GET":
        return None
    if_range = request.header(b"if-range")
    if if_range is not None and not _if_range_holds(if_range, stored.headers):
        return None
    size = stored.length
    ranges = parse_range(value, size)
    if ranges is None:
        return None
    if not ranges:
        stored.close()
        extra = [(b"Content-Range", b"bytes */%d" % size)]
        return Response(416, [*headers[-2:], *extra])
    if len(ranges) == 1:
        first, last = ranges[0]
        partial = [*headers, (b"Content-Range", b"bytes %d-%d/%d" % (first, last, size))]
        if stored.body is not None:
            return Response(206, partial, stored.body[first : last + 1])
        assert stored.fd is not None
        fd, stored.fd = stored.fd, None
        return Response(206, partial, file=FileBody(fd, stored.offset + first, last - first + 1))
    if stored.body is None:
        return None  # several ranges of a file-backed entry: the whole response instead
    content_type = first_line(stored.headers, b"content-type") or b"application/octet-stream"
    parts = Byteranges(ranges, size, content_type)
    multipart = [(n, v) for n, v in headers if n.lower() != b"content-type"]
    multipart.append((b"Content-Type", parts.content_type))
    return Response(206, multipart, parts.from_bytes(stored.body))


def _if_range_holds(value: bytes, stored: Headers) -> bool:
    """``If-Range`` (RFC 9110 §13.1.5): a strong ETag equal to the stored one, or the
    stored ``Last-Modified`` date exactly."""
    if value.startswith((b'"', b"W/")):
        etag = first_line(stored, b"etag")
        return etag is not None and not value.startswith(b"W/") and value == etag
    last_modified = first_line(stored, b"last-modified")
    return last_modified is not None and value == last_modified
