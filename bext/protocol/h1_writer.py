"""HTTP/1.1 response serialisation: bytes out, no I/O.

Status lines are precomputed; a head is built with one ``b"".join``. Framing headers
(Content-Length / Transfer-Encoding / Connection) are decided here from the request's
version and keep-alive state, so handlers never think about HTTP/1.1 framing.
"""

from __future__ import annotations

from http import HTTPStatus

from bext.protocol.events import Headers

STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def response_head(
    status: int,
    headers: Headers,
    preamble: bytes,
    content_length: int | None,
    keep_alive: bool,
    http10: bool,
) -> bytes:
    """Serialise a response head.

    Header values must not contain CR or LF; every caller passes values that came through
    a parser or the config validator, both of which refuse them.

    ``preamble`` carries the per-connection constant fields (``Date``, ``Server``) already
    serialised. ``content_length`` None means the body length is unknown: chunked for a
    HTTP/1.1 client, close-delimited for HTTP/1.0.
    """
    parts = [status_line(status), preamble]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")  # one join below, no bytes made per field
    if status < 200 or status == 204:
        pass  # RFC 9110 §8.6: no Content-Length on 1xx and 204
    elif content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % content_length)
    elif status != 304:
        if http10:
            keep_alive = False  # the body ends when the connection does
        else:
            parts.append(_CHUNKED)
    if not keep_alive:
        parts.append(_CLOSE)
    elif http10:
        parts.append(_KEEP_ALIVE)
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head_parts(
    status: int,
    headers: Headers,
    content_length: int | None,
    keep_alive: bool,
    http10: bool,
) -> bytes:
    """Everything of a head after ``Date``/``Server``: cacheable for a shared response."""
    head = response_head(status, headers, b"", content_length, keep_alive, http10)
    return head[len(status_line(status)) :]


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``data`` must not be empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data)
