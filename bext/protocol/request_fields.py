"""HTTP/2 and HTTP/3 request header sections, checked and mapped to bext's request.

Both versions carry the request line in pseudo-header fields and share the field rules
(RFC 9113 §8, RFC 9114 §4): lowercase names, no connection-specific fields, ``te`` only
``trailers``, ``host`` agreeing with ``:authority``, cookie crumbs to join back. So one pass
(:func:`check_request_fields`) serves both, with the same limits and refusals as HTTP/1.1
(:mod:`bext.protocol.h1_rules`), so a request is not accepted over one version and refused
over another. What differs is a parameter: how the section size is counted and against
which limit, the ``:scheme`` accepted and the version string.

Malformed requests raise :class:`MalformedRequest` (400); well-formed requests bext will
not serve raise a plain :class:`~bext.protocol.events.ProtocolError` with their status
(405, 414, 417, 431).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bext.protocol.events import Headers, ParserLimits, ProtocolError, RequestHead
from bext.protocol.h1_rules import HOST_VALUE, KNOWN_METHODS, check_method

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
"""RFC 9113 §8.2.2, RFC 9114 §4.2: fields that only mean something to one HTTP/1.1 hop."""

_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110 §9.1: a method is a token; anything else in ``:method`` is malformed."""

_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
"""RFC 9110 token, lowercase only (RFC 9113 §8.2.1, RFC 9114 §4.2 make uppercase malformed)."""

_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z")
"""RFC 9113 §8.2.1 (no NUL, CR, LF, no surrounding whitespace), plus RFC 9110 §5.5's other
control characters: the value will be written to an HTTP/1.1 upstream."""

_SPECIAL = CONNECTION_SPECIFIC | {b"te", b"host", b"content-length", b"cookie", b"expect"}
"""The regular fields that need a closer look; everything else costs one set lookup."""

_known_names: set[bytes] = set()
"""Field names already validated: a site sees a few dozen, so a set beats a regex."""

_known_hosts: set[bytes] = set()


class MalformedRequest(ProtocolError):
    """A malformed request (RFC 9113 §8.1.1, RFC 9114 §4.1.2), answered 400.

    HTTP/2 then resets the stream with PROTOCOL_ERROR.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


def _check_name(name: bytes) -> None:
    if name not in _known_names:
        if not _FIELD_NAME.fullmatch(name):
            raise MalformedRequest("invalid field name")
        if len(_known_names) > 4096:
            _known_names.clear()
        _known_names.add(name)


def check_request_fields(
    fields: Sequence[tuple[bytes, bytes]],
    limits: ParserLimits,
    http_version: str,
    max_size: int,
    field_overhead: int = 0,
    scheme: bytes | None = None,
) -> RequestHead:
    """Validate a decoded request header section and map it to a :class:`RequestHead`.

    ``headers`` keeps the regular fields in order with ``host`` first (taken from
    ``:authority`` when the client sent no ``host``, as clients usually do) and the
    ``cookie`` fields joined back into one (RFC 9113 §8.2.3, RFC 9114 §4.2.1), since
    upstreams speak HTTP/1.1. The section is refused (431) when the sum over its fields of
    name + value + ``field_overhead`` bytes exceeds ``max_size``. ``scheme``, if given, is
    the only ``:scheme`` accepted. ``content_length`` is not compared with
    ``limits.max_body_size``: that is the caller's 413.
    """
    method: bytes | None = None
    scheme_value: bytes | None = None
    path: bytes | None = None
    authority: bytes | None = None
    protocol = False
    regular = False
    headers: Headers = []
    size = 0
    host: bytes | None = None
    content_length: int | None = None
    expect_continue = False
    cookie_at = -1
    cookies: list[bytes] = []
    for field in fields:
        name, value = field
        size += len(name) + len(value) + field_overhead
        if name[:1] == b":":
            if regular:
                raise MalformedRequest("pseudo-header field after a regular field")
            if name == b":method":
                if method is not None:
                    raise MalformedRequest("repeated :method")
                method = value
            elif name == b":path":
                if path is not None:
                    raise MalformedRequest("repeated :path")
                path = value
            elif name == b":scheme":
                if scheme_value is not None:
                    raise MalformedRequest("repeated :scheme")
                scheme_value = value
            elif name == b":authority":
                if authority is not None:
                    raise MalformedRequest("repeated :authority")
                authority = value
            elif name == b":protocol":
                protocol = True
            else:
                raise MalformedRequest("unknown pseudo-header field")
            continue
        regular = True
        _check_name(name)
        if _BAD_VALUE.search(value):
            raise MalformedRequest("invalid field value")
        if name in _SPECIAL:
            if name in CONNECTION_SPECIFIC:
                raise MalformedRequest("connection-specific header field")
            if name == b"te":
                if value.lower() != b"trailers":
                    raise MalformedRequest("te other than trailers")
            elif name == b"host":
                if host is not None:
                    raise MalformedRequest("repeated host")
                host = value
            elif name == b"content-length":
                if not value.isdigit() or (
                    content_length is not None and int(value) != content_length
                ):
                    raise MalformedRequest("invalid content-length")
                content_length = int(value)
            elif name == b"cookie":
                cookies.append(value)
                if cookie_at >= 0:
                    continue  # joined into the first one below
                cookie_at = len(headers)
            elif value.lower() != b"100-continue":  # expect
                raise ProtocolError(417, "unsupported expectation")
            else:
                expect_continue = True
        headers.append(field)

    if method is None:
        raise MalformedRequest("missing :method")
    try:
        method_name = method.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedRequest("invalid :method") from None
    if protocol:
        # RFC 8441 §3, RFC 9220 §3: only after the server sent
        # SETTINGS_ENABLE_CONNECT_PROTOCOL, which bext does not (no WebSocket over them yet).
        raise MalformedRequest(":protocol without extended CONNECT")
    if method_name == "CONNECT":
        # Refused whatever its form, as over HTTP/1.1; one without a target is malformed.
        if authority is None:
            raise MalformedRequest("malformed CONNECT")
        raise ProtocolError(405, "CONNECT is not supported")
    if scheme_value is None or path is None:
        raise MalformedRequest("missing :scheme or :path")
    if scheme is not None and scheme_value != scheme:
        raise MalformedRequest("unsupported :scheme")
    if method_name not in KNOWN_METHODS:
        if _METHOD.fullmatch(method) is None:
            raise MalformedRequest("invalid :method")
        check_method(method_name)  # unknown methods are forwarded, as over HTTP/1.1
    if len(path) > limits.max_uri_length:
        raise ProtocolError(414, "request-target too long")
    if path[:1] != b"/" and (path != b"*" or method_name != "OPTIONS"):
        raise MalformedRequest("invalid :path")
    if len(headers) > limits.max_headers:
        raise ProtocolError(431, "too many header fields")
    if size > max_size:
        raise ProtocolError(431, "header section too large")

    if authority is not None:
        if host is not None and host != authority:
            raise MalformedRequest("host and :authority differ")
    elif host is None:
        raise MalformedRequest("no :authority or host")
    target_host = authority if authority is not None else host
    assert target_host is not None
    if target_host not in _known_hosts:
        # RFC 9110 §4.2.1-2: an http(s) URI with an empty host is invalid.
        if target_host[:1] in (b"", b":") or not HOST_VALUE.match(target_host):
            raise MalformedRequest("invalid :authority")
        if len(_known_hosts) > 1024:
            _known_hosts.clear()
        _known_hosts.add(target_host)
    if len(cookies) > 1:
        headers[cookie_at] = (b"cookie", b"; ".join(cookies))
    if host is None:
        headers.insert(0, (b"host", target_host))
    return RequestHead(
        method_name,
        path,
        http_version,
        headers,
        True,
        content_length,
        False,
        expect_continue,
        None,
        target_host.decode("latin-1"),
    )


def check_trailers(fields: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Validate a request's trailer section (RFC 9113 §8.1: no pseudo-header fields)."""
    trailers: Headers = []
    for field in fields:
        name, value = field
        if name[:1] == b":":
            raise MalformedRequest("pseudo-header field in trailers")
        _check_name(name)
        if _BAD_VALUE.search(value):
            raise MalformedRequest("invalid field value")
        trailers.append(field)
    return trailers


def parse_request_head(fields: Headers, limits: ParserLimits) -> RequestHead:
    """HTTP/3's request head check (:func:`check_request_fields`); raise ProtocolError.

    aioquic already checked the field names and values and that ``:method`` and
    ``:authority`` are there; checking again costs little and keeps one set of rules.
    The section size is counted as HTTP/1.1 counts it (no per-field overhead) against
    ``limits.max_header_size``, and only ``https`` is served over QUIC.
    """
    return check_request_fields(fields, limits, "3", limits.max_header_size, scheme=b"https")
