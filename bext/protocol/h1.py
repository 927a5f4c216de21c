"""HTTP/1.1 request parsing on httptools (llhttp): the fast engine.

llhttp is strict out of the box (it refuses Content-Length with Transfer-Encoding, duplicate
Content-Length, obs-fold, bare LF, NUL and CR in values); :mod:`bext.protocol.h1_rules` adds
the RFC 9112 checks it leaves to the application, so this engine and the h11 reference
engine refuse the same things. All limits are enforced while bytes arrive, never after
buffering an unbounded amount.
"""

from __future__ import annotations

import httptools

from bext.protocol.events import (
    BodyChunk,
    Event,
    Headers,
    MessageEnd,
    ParserLimits,
    ProtocolError,
)
from bext.protocol.h1_rules import check_head


class HttptoolsParser:
    """Turns request bytes into :mod:`bext.protocol.events` events."""

    __slots__ = (
        "_body_size",
        "_error",
        "_events",
        "_head_bytes",
        "_header_bytes",
        "_headers",
        "_in_head",
        "_limits",
        "_parser",
        "_trailers",
        "_upgrade_tail",
        "_url",
        "_url_len",
    )

    def __init__(self, limits: ParserLimits) -> None:
        self._limits = limits
        self._events: list[Event] = []
        self._error: ProtocolError | None = None
        self._upgrade_tail: bytearray | None = None
        self._reset_message()
        self._in_head = False
        self._head_bytes = 0
        self._parser = httptools.HttpRequestParser(self)

    def _reset_message(self) -> None:
        self._url: list[bytes] = []
        self._url_len = 0
        self._headers: Headers = []
        self._header_bytes = 0
        self._trailers: Headers | None = None
        self._body_size = 0

    # -- public sans-IO interface ------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes. Raises :class:`ProtocolError`."""
        if self._error is not None:
            raise self._error
        if self._upgrade_tail is not None:
            self._upgrade_tail += data
            return []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_tail = bytearray(data[exc.args[0] :])
        except httptools.HttpParserCallbackError:
            assert self._error is not None
            raise self._error from None
        except httptools.HttpParserInvalidMethodError:
            self._error = ProtocolError(400, "invalid method")
            raise self._error from None
        except httptools.HttpParserError as exc:
            self._error = _classify(exc)
            raise self._error from None
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_size + self._limits.max_uri_length:
                status = 414 if not self._headers and self._url else 431
                self._error = ProtocolError(status, "request head too large")
                raise self._error
        events = self._events
        self._events = []
        return events

    @property
    def in_head(self) -> bool:
        """True while a request head has started but is not complete (slowloris window)."""
        return self._in_head

    @property
    def upgrade_pending(self) -> bool:
        return self._upgrade_tail is not None

    def take_upgrade_tail(self) -> bytes:
        """Bytes after a request that asked for a protocol switch, for the new protocol."""
        tail = bytes(self._upgrade_tail or b"")
        self._upgrade_tail = None
        self._error = ProtocolError(400, "connection was handed to another protocol")
        return tail

    def decline_upgrade(self) -> list[Event]:
        """Keep speaking HTTP/1.1 after an Upgrade request that was answered normally."""
        tail = bytes(self._upgrade_tail or b"")
        self._upgrade_tail = None
        self._parser = httptools.HttpRequestParser(self)
        return self.feed(tail) if tail else []

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, part: bytes) -> None:
        self._url_len += len(part)
        if self._url_len > self._limits.max_uri_length:
            self._fail(414, "request-target too long")
        self._url.append(part)

    def on_header(self, name: bytes, value: bytes | None) -> None:
        value = value or b""
        if self._in_head:
            headers = self._headers
        else:
            if self._trailers is None:
                self._trailers = []
            headers = self._trailers
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header_size:
            self._fail(431, "header section too large")
        if len(headers) >= self._limits.max_headers:
            self._fail(431, "too many header fields")
        headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        try:
            head = check_head(
                parser.get_method().decode("latin-1"),
                b"".join(self._url),
                parser.get_http_version(),
                self._headers,
                self._limits,
            )
        except ProtocolError as exc:
            self._error = exc
            raise
        self._header_bytes = 0
        self._events.append(head)

    def on_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self._limits.max_body_size:
            self._fail(413, "request body larger than max_body_size")
        self._events.append(BodyChunk(data))

    def on_message_complete(self) -> None:
        self._events.append(MessageEnd(self._trailers))

    def _fail(self, status: int, reason: str) -> None:
        self._error = ProtocolError(status, reason)
        raise self._error


def _classify(exc: Exception) -> ProtocolError:
    """Map an llhttp error to a status; everything malformed is a 400."""
    message = str(exc)
    if "overflow" in message and "Content-Length" in message:
        return ProtocolError(413, "request body larger than max_body_size")
    return ProtocolError(400, message or "malformed request")
