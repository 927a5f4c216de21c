"""RFC 9112 rules that bext enforces on top of whichever parser engine runs.

Both engines (httptools and h11) call :func:`check_head` once a request head is parsed, so the
two agree on what is refused even where the libraries themselves differ (h11, for one, accepts
``Content-Length`` together with ``Transfer-Encoding``, a request-smuggling vector for a proxy).
"""

from __future__ import annotations

import re

from bext.protocol.events import Headers, ParserLimits, ProtocolError, RequestHead

_ABSOLUTE_FORM = re.compile(rb"https?://[^/?#@\s]+", re.IGNORECASE)
"""RFC 9112 §3.2.2 absolute-form with the non-empty host RFC 9110 §4.2.1 demands."""

_FRAMING_FIELDS = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}
)
"""The fields that decide how a request is framed and routed; the rest pass untouched."""

HOST_VALUE = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?\Z")
"""RFC 9112 §3.2 / RFC 3986: uri-host [ ":" port ]."""

_VALID_HOSTS: set[bytes] = set()
"""Host values already validated (a site sees a handful): a set lookup, not a regex."""

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
    | {"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH"}
    | {"REPORT", "MKCALENDAR", "PURGE", "LINK", "UNLINK", "QUERY"}
)
"""Methods accepted without a closer look. Others are forwarded too when
:func:`check_method` admits them: a proxy passes methods it does not know (RFC 9110 §9.1
gives 501 to origin servers, not intermediaries; nginx forwards them as well)."""

_UPPER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
"""An RFC 9110 token without lower-case letters: every registered method is upper case, and
nginx refuses ``get`` just the same."""


def check_method(method: str) -> None:
    """Admit a method outside :data:`KNOWN_METHODS`, or raise :class:`ProtocolError` (400)."""
    if _UPPER_TOKEN.fullmatch(method) is None:
        raise ProtocolError(400, "unknown or invalid method")
    if method == "PRI":
        raise ProtocolError(400, "PRI is the HTTP/2 connection preface, not a method")


def check_head(
    method: str,
    target: bytes,
    http_version: str,
    headers: Headers,
    limits: ParserLimits,
) -> RequestHead:
    """Validate a parsed head and derive its framing; raise :class:`ProtocolError` if faulty."""
    if http_version not in ("1.1", "1.0"):
        raise ProtocolError(505, f"HTTP version {http_version} is not supported")
    if method not in KNOWN_METHODS:
        check_method(method)  # llhttp's own table is wider than ours, but not open-ended:
        # the httptools engine hands requests with other methods to h11 (h1.py)
    elif method == "CONNECT":
        raise ProtocolError(405, "CONNECT is not supported")
    if len(target) > limits.max_uri_length:
        raise ProtocolError(414, "request-target too long")
    if not target or (target[0] != 0x2F and target != b"*" and not _ABSOLUTE_FORM.match(target)):
        raise ProtocolError(400, "invalid request-target")
    if len(headers) > limits.max_headers:
        raise ProtocolError(431, "too many header fields")

    host_count = 0
    host: bytes | None = None
    content_length: int | None = None
    te: bytes | None = None
    connection = b""
    expect_continue = False
    upgrade: bytes | None = None
    for name, value in headers:
        if name not in _FRAMING_FIELDS:
            continue  # most fields: one set lookup, no comparison chain
        if name == b"host":
            host_count += 1
            host = value
            if value not in _VALID_HOSTS:
                if not HOST_VALUE.match(value):
                    raise ProtocolError(400, "invalid Host header")
                if len(_VALID_HOSTS) > 1024:
                    _VALID_HOSTS.clear()
                _VALID_HOSTS.add(value)
        elif name == b"content-length":
            if content_length is not None or not value.isdigit():
                raise ProtocolError(400, "invalid or repeated Content-Length")
            content_length = int(value)
        elif name == b"transfer-encoding":
            if te is not None:
                raise ProtocolError(400, "repeated Transfer-Encoding")
            te = value.lower()
        elif name == b"connection":
            connection = connection + b"," + value.lower() if connection else value.lower()
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise ProtocolError(417, "unsupported expectation")
            expect_continue = http_version == "1.1"
        else:
            upgrade = value
    if http_version == "1.1" and host_count != 1:
        raise ProtocolError(400, "a HTTP/1.1 request needs exactly one Host header")
    if host_count > 1:
        raise ProtocolError(400, "repeated Host header")
    chunked = False
    if te is not None:
        if http_version == "1.0":
            raise ProtocolError(400, "Transfer-Encoding in a HTTP/1.0 request")
        if content_length is not None:
            raise ProtocolError(400, "Content-Length together with Transfer-Encoding")
        if te != b"chunked":
            # RFC 9112 §6.3: without chunked as the final coding the length is unknowable.
            raise ProtocolError(400, "unsupported Transfer-Encoding")
        chunked = True
    if content_length is not None and content_length > limits.max_body_size:
        raise ProtocolError(413, "request body larger than max_body_size")

    tokens = {t.strip() for t in connection.split(b",")} if connection else set()
    keep_alive = b"close" not in tokens if http_version == "1.1" else b"keep-alive" in tokens
    if not upgrade or b"upgrade" not in tokens or http_version == "1.0":
        upgrade = None  # RFC 9110 §7.8: a HTTP/1.0 Upgrade is ignored
    elif chunked or content_length:
        # llhttp hands everything after an Upgrade head to the new protocol, body included;
        # answering it as plain HTTP would parse that body as requests (smuggling).
        raise ProtocolError(400, "Upgrade with a request body is not supported")
    return RequestHead(
        method,
        target,
        http_version,
        headers,
        keep_alive,
        content_length,
        chunked,
        expect_continue,
        upgrade,
        host.decode("latin-1") if host is not None else None,
    )
