"""HTTP/1.1 request parsing on httptools (llhttp): the fast engine.

llhttp is strict out of the box (it refuses Content-Length with Transfer-Encoding, duplicate
Content-Length, obs-fold, bare LF, NUL and CR in values); :mod:`bext.protocol.h1_rules` adds
the RFC 9112 checks it leaves to the application, so this engine and the h11 reference
engine refuse the same things. All limits are enforced while bytes arrive, never after
buffering an unbounded amount.

llhttp only knows the methods in its own table. A proxy forwards the others (``SOURCE``
is in it, ``FOO`` is not), so when llhttp refuses a method the bytes since the last message
boundary are parsed again by the h11 engine, which then serves the rest of the connection.
Those bytes are kept only while a message spans reads, and only up to the head limits: a
refused method right behind a large request in the same read stays a 400.
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
from bext.protocol.h1_ref import H11Parser
from bext.protocol.h1_rules import check_head

_METHOD_FOR_VERSION = "Invalid method for HTTP/x.x request"
"""llhttp's error for a method from its RTSP table (``SETUP``, ``PLAY``) in an HTTP request."""


class HttptoolsParser:
    """Turns request bytes into :mod:`bext.protocol.events` events."""

    __slots__ = (
        "_body_size",
        "_carry",
        "_carry_done",
        "_carry_size",
        "_chunked",
        "_chunks",
        "_completed",
        "_error",
        "_events",
        "_fallback",
        "_feed_body",
        "_fields",
        "_framing",
        "_head_bytes",
        "_header_bytes",
        "_in_head",
        "_in_message",
        "_last_upgrade",
        "_limits",
        "_max_header_size",
        "_max_headers",
        "_parser",
        "_pending_error",
        "_size_line",
        "_upgrade_tail",
        "_url",
        "_url_len",
    )

    def __init__(self, limits: ParserLimits) -> None:
        self._limits = limits
        self._max_header_size = limits.max_header_size
        self._max_headers = limits.max_headers
        self._events: list[Event] = []
        self._error: ProtocolError | None = None
        self._pending_error: ProtocolError | None = None
        self._upgrade_tail: bytearray | None = None
        self._feed_body = 0
        self._last_upgrade: bytes | None = None
        self._reset_message()
        self._in_head = False
        self._in_message = False
        self._chunked = False
        """In a chunked body (set by its head, cleared when the message completes)."""
        self._size_line = False
        """In a chunked body, between chunks: reading a chunk-size line (and extensions)."""
        self._head_bytes = 0
        self._completed = 0
        """Messages completed so far (to tell a message boundary in a replay)."""
        self._carry: list[bytes] | None = []
        """The reads since the last one that ended between messages (None: too long)."""
        self._carry_size = 0
        self._carry_done = 0
        """``_completed`` when the carry started (when it holds anything)."""
        self._fallback: H11Parser | None = None
        """The h11 engine, once it has taken the connection over (an unknown method)."""
        self._parser = httptools.HttpRequestParser(self)

    def _reset_message(self) -> None:
        self._url: list[bytes] = []
        self._url_len = 0
        self._fields: Headers = []
        """The header section's fields, then (once it is complete) the trailer section's."""
        self._header_bytes = 0
        self._body_size = 0
        self._chunks = 0
        self._framing = 0

    # -- public sans-IO interface ------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes. Raises :class:`ProtocolError`.

        When bytes after a complete request are faulty, that request's events are still
        returned and the error waits in :attr:`pending_error`, so a valid request is never
        lost to garbage behind it.
        """
        if self._fallback is not None:
            return self._fallback.feed(data)
        if self._error is not None:
            raise self._error
        if self._upgrade_tail is not None:
            self._upgrade_tail += data
            return []
        was_in_head = self._in_head
        in_chunked_body = self._chunked
        completed = self._completed
        self._feed_body = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            tail = data[exc.args[0] :]
            if self._last_upgrade is None:
                # llhttp switched where bext's rules say there is no switch (HTTP/1.0, an
                # empty Upgrade): carry on as HTTP/1.1 with a fresh parser.
                events = self._events
                self._events = []
                self._parser = httptools.HttpRequestParser(self)
                self._in_message = False
                self._carry = []  # the tail starts a message
                self._carry_size = 0
                return events + (self.feed(tail) if tail else [])
            self._upgrade_tail = bytearray(tail)
        except httptools.HttpParserCallbackError:
            assert self._error is not None
            return self._fail_feed()
        except httptools.HttpParserInvalidMethodError:
            return self._hand_to_h11(data, completed)
        except httptools.HttpParserError as exc:
            if str(exc) == _METHOD_FOR_VERSION:
                return self._hand_to_h11(data, completed)
            self._error = _classify(exc)
            return self._fail_feed()
        if was_in_head and self._in_head:
            # Every byte of this feed belongs to one unfinished head: httptools buffers
            # partial field values itself, so bound them here (one feed of slack).
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_size + self._limits.max_uri_length:
                status = 414 if not self._fields and self._url else 431
                self._error = ProtocolError(status, "request head too large")
                return self._fail_feed()
        elif in_chunked_body and self._completed == completed:
            # The same chunked body as when the read began: what is not body is chunk-size
            # lines, extensions and trailers (the first read after the head: one of slack).
            self._framing += len(data) - self._feed_body
            if self._framing > self._limits.max_header_size + 24 * self._chunks:
                self._error = (
                    ProtocolError(400, "chunk extensions too long")
                    if self._size_line
                    else ProtocolError(431, "chunked trailer section too large")
                )
                return self._fail_feed()
        if self._in_message:
            carry = self._carry
            if carry is not None:
                if not carry:
                    self._carry_done = completed  # the carry starts where this read did
                self._carry_size += len(data)
                if self._carry_size > self._limits.max_header_size + self._limits.max_uri_length:
                    self._carry = None
                else:
                    carry.append(data)
        elif self._carry_size or self._carry is None:  # the next read starts at a boundary
            self._carry = []
            self._carry_size = 0
        events = self._events
        self._events = []
        return events

    def _hand_to_h11(self, data: bytes, completed: int) -> list[Event]:
        """llhttp refused a method: parse again with h11 from the last message boundary.

        The messages llhttp completed since then are skipped in h11's events; h11 then
        serves the connection. Without the bytes (too long a message before it), or when
        the two engines disagree about what came before, it is a 400 as before.
        """
        events = self._events
        self._events = []
        carry = self._carry
        engine = H11Parser(self._limits)
        replayed: list[Event] = []
        error: ProtocolError | None = ProtocolError(400, "unknown or invalid method")
        if carry is not None:
            try:
                replayed = engine.feed(b"".join(carry) + data)
                error = engine.pending_error
            except ProtocolError as exc:
                error = exc
        # The messages llhttp completed since the replay's start: it returned them already.
        skip = self._completed - (self._carry_done if carry else completed)
        start = 0
        while skip and start < len(replayed):
            if type(replayed[start]) is MessageEnd:
                skip -= 1
            start += 1
        if skip:  # h11 did not even get as far as llhttp
            error = error or ProtocolError(400, "unknown or invalid method")
            replayed = []
        events += replayed[start:]
        if error is None:
            self._fallback = engine
            return events
        self._error = error
        return self._fail_events(events)

    def _fail_feed(self) -> list[Event]:
        events = self._events
        self._events = []
        return self._fail_events(events)

    def _fail_events(self, events: list[Event]) -> list[Event]:
        error = self._error
        assert error is not None
        if any(type(event) is MessageEnd for event in events):
            self._pending_error = error
            return events
        raise error

    @property
    def pending_error(self) -> ProtocolError | None:
        """A fault found after the requests last returned; they are to be answered first."""
        if self._fallback is not None:
            return self._pending_error or self._fallback.pending_error
        return self._pending_error

    @property
    def in_head(self) -> bool:
        """True while a request head has started but is not complete (slowloris window)."""
        if self._fallback is not None:
            return self._fallback.in_head
        return self._in_head

    @property
    def upgrade_pending(self) -> bool:
        if self._fallback is not None:
            return self._fallback.upgrade_pending
        return self._upgrade_tail is not None

    def take_upgrade_tail(self) -> bytes:
        """Bytes after a request that asked for a protocol switch, for the new protocol."""
        if self._fallback is not None:
            return self._fallback.take_upgrade_tail()
        tail = bytes(self._upgrade_tail or b"")
        self._upgrade_tail = None
        self._error = ProtocolError(400, "connection was handed to another protocol")
        return tail

    def decline_upgrade(self) -> list[Event]:
        """Keep speaking HTTP/1.1 after an Upgrade request that was answered normally."""
        if self._fallback is not None:
            return self._fallback.decline_upgrade()
        tail = bytes(self._upgrade_tail or b"")
        self._upgrade_tail = None
        self._parser = httptools.HttpRequestParser(self)
        self._in_message = False
        self._carry = []  # the tail starts a message
        self._carry_size = 0
        return self.feed(tail) if tail else []

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True
        self._in_message = True
        self._head_bytes = 0

    def on_url(self, part: bytes) -> None:
        self._url_len += len(part)
        if self._url_len > self._limits.max_uri_length:
            self._fail(414, "request-target too long")
        self._url.append(part)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called once per field: the hottest callback, so one combined limit test.
        value = value.rstrip(b" \t")  # llhttp strips leading OWS only
        fields = self._fields  # the header section's, then the trailer section's
        self._header_bytes = size = self._header_bytes + len(name) + len(value) + 4
        if size > self._max_header_size or len(fields) >= self._max_headers:
            if size > self._max_header_size:
                self._fail(431, "header section too large")
            self._fail(431, "too many header fields")
        fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        try:
            head = check_head(
                parser.get_method().decode("latin-1"),
                b"".join(self._url),
                parser.get_http_version(),
                self._fields,
                self._limits,
            )
        except ProtocolError as exc:
            self._error = exc
            raise
        self._header_bytes = 0
        self._fields = []  # trailer fields from here on, if any
        self._last_upgrade = head.upgrade
        self._chunked = self._size_line = head.chunked
        self._events.append(head)

    def on_chunk_header(self) -> None:
        self._chunks += 1
        self._size_line = False

    def on_chunk_complete(self) -> None:
        self._size_line = True

    def on_body(self, data: bytes) -> None:
        self._feed_body += len(data)
        self._body_size += len(data)
        if self._body_size > self._limits.max_body_size:
            self._fail(413, "request body larger than max_body_size")
        self._events.append(BodyChunk(data))

    def on_message_complete(self) -> None:
        self._chunks = 0
        self._chunked = self._in_message = False
        self._completed += 1
        self._events.append(MessageEnd(self._fields or None))

    def _fail(self, status: int, reason: str) -> None:
        self._error = ProtocolError(status, reason)
        raise self._error


def _classify(exc: Exception) -> ProtocolError:
    """Map an llhttp error to a status; everything malformed is a 400."""
    message = str(exc)
    if "overflow" in message and "Content-Length" in message:
        return ProtocolError(413, "request body larger than max_body_size")
    return ProtocolError(400, message or "malformed request")
