"""RFC 9112 rules that bext enforces on top of whichever parser engine runs.

Both engines (httptools and h11) call :func:`check_head` once a request head is parsed, so the
two agree on what is refused even where the libraries themselves differ (h11, for one, accepts
``Content-Length`` together with ``Transfer-Encoding``, a request-smuggling vector for a proxy).
"""

from __future__ import annotations

import re

from bext.protocol.events import Headers, ParserLimits, ProtocolError, RequestHead

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
"""RFC 9110 §5.6.2 token (method names, header names)."""

_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
    | {"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH"}
    | {"REPORT", "MKCALENDAR", "PURGE", "LINK", "UNLINK", "QUERY"}
)


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
    if method not in _KNOWN_METHODS:
        # 400 rather than 501: llhttp refuses methods outside its table before bext sees
        # them, and both engines must answer alike.
        raise ProtocolError(400, "unknown or invalid method")
    if method == "CONNECT":
        raise ProtocolError(405, "CONNECT is not supported")
    if len(target) > limits.max_uri_length:
        raise ProtocolError(414, "request-target too long")
    if not target or (target[0] != 0x2F and target != b"*" and not target.startswith(b"http")):
        raise ProtocolError(400, "invalid request-target")
    if len(headers) > limits.max_headers:
        raise ProtocolError(431, "too many header fields")

    host_count = 0
    content_length: int | None = None
    te: bytes | None = None
    connection = b""
    expect_continue = False
    upgrade: bytes | None = None
    for name, value in headers:
        if name == b"host":
            host_count += 1
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
        elif name == b"upgrade":
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
    if upgrade is not None and b"upgrade" not in tokens:
        upgrade = None
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
    )
