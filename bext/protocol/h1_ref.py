"""HTTP/1.1 request parsing on h11: the strict pure-Python reference engine.

Selected with ``server.http1_engine = "h11"``; the protocol-conformance tests run against
both engines so they cannot drift. h11 is used purely as a parser: one ``h11.Connection``
per request, its ``trailing_data`` handed to the next, so h11's own response-side state
machine never constrains pipelining.

h11 is lenient in places where a proxy must not be (bare LF line endings, obs-fold, HTTP/1.0
with Transfer-Encoding, Content-Length together with Transfer-Encoding). The raw head is
checked for the first two before h11 sees it; :func:`bext.protocol.h1_rules.check_head`
covers the rest for both engines.
"""

from __future__ import annotations

import re

import h11

from bext.protocol.events import (
    BodyChunk,
    Event,
    MessageEnd,
    ParserLimits,
    ProtocolError,
    RequestHead,
)
from bext.protocol.h1_rules import check_head

_BARE_LF = re.compile(rb"(?<!\r)\n")
_OBS_FOLD = re.compile(rb"\n[ \t]")
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FRAMING_FIELD = re.compile(rb"\r\n(content-length|transfer-encoding)[ \t]*:[ \t]*([^\r]*)", re.I)


class H11Parser:
    """Same interface as :class:`bext.protocol.h1.HttptoolsParser`."""

    def __init__(self, limits: ParserLimits) -> None:
        self._limits = limits
        self._head_limit = limits.max_header_size + limits.max_uri_length + 4
        self._buffer = bytearray()
        self._conn: h11.Connection | None = None
        self._error: ProtocolError | None = None
        self._pending_error: ProtocolError | None = None
        self._upgrade_tail: bytes | None = None
        self._body_size = 0
        self._upgrade_requested = False
        self._chunked = False
        self._chunks = 0
        self._fed = 0
        """Bytes handed to h11 for this message past its head (body and chunk framing)."""

    @property
    def in_head(self) -> bool:
        return self._conn is None and bool(self._buffer.strip(b"\r\n"))

    @property
    def upgrade_pending(self) -> bool:
        return self._upgrade_tail is not None

    def take_upgrade_tail(self) -> bytes:
        tail = self._upgrade_tail or b""
        self._upgrade_tail = None
        self._error = ProtocolError(400, "connection was handed to another protocol")
        return tail

    def decline_upgrade(self) -> list[Event]:
        tail = self._upgrade_tail or b""
        self._upgrade_tail = None
        return self.feed(tail) if tail else []

    def feed(self, data: bytes) -> list[Event]:
        if self._error is not None:
            raise self._error
        if self._upgrade_tail is not None:
            self._upgrade_tail += data
            return []
        events: list[Event] = []
        try:
            return self._feed(data, events)
        except ProtocolError as exc:
            self._error = exc
            if any(type(event) is MessageEnd for event in events):
                self._pending_error = exc  # answer the complete requests first
                return events
            raise

    @property
    def pending_error(self) -> ProtocolError | None:
        return self._pending_error

    def _feed(self, data: bytes, events: list[Event]) -> list[Event]:
        self._buffer += data
        while True:
            if self._conn is None and not self._start_message():
                return events
            assert self._conn is not None
            if self._buffer:
                self._fed += len(self._buffer)
                self._conn.receive_data(bytes(self._buffer))
                self._buffer.clear()
            if not self._pull_events(events):
                if self._chunked:
                    self._check_chunk_framing()
                return events
            # The message is complete: what h11 did not consume starts the next one.
            trailing, _closed = self._conn.trailing_data
            self._conn = None
            self._buffer = bytearray(trailing)
            if self._upgrade_tail is not None:
                self._upgrade_tail = bytes(self._buffer)
                self._buffer.clear()
                return events
            if not self._buffer:
                return events

    def _start_message(self) -> bool:
        """Validate a complete raw head and open an h11 connection for it."""
        buffer = self._buffer
        while buffer.startswith(b"\r\n"):  # RFC 9112 §2.2: ignore leading empty lines
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        head = buffer if end < 0 else buffer[: end + 2]
        if _BARE_LF.search(head):
            raise ProtocolError(400, "bare LF in request head")
        if _OBS_FOLD.search(head):
            raise ProtocolError(400, "obsolete line folding in request head")
        if end >= 0:
            _check_framing_fields(bytes(head))
        if end < 0:
            if len(buffer) > self._head_limit:
                line_end = buffer.find(b"\r\n")
                status = 414 if line_end < 0 or line_end > self._limits.max_uri_length else 431
                raise ProtocolError(status, "request head too large")
            return False
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._head_limit)
        self._body_size = 0
        self._chunked = False
        self._chunks = 0
        self._fed = -(end + 4)
        return True

    def _check_chunk_framing(self) -> None:
        """Bound what a chunked body holds besides data, as the httptools engine does.

        h11 limits one incomplete line only, so many long chunk extensions would pass.
        """
        framing = self._fed - self._body_size
        if framing > self._limits.max_header_size + 24 * self._chunks:
            reader = getattr(self._conn, "_reader", None)
            if getattr(reader, "_reading_trailer", False):
                raise ProtocolError(431, "chunked trailer section too large")
            raise ProtocolError(400, "chunk extensions too long")

    def _pull_events(self, events: list[Event]) -> bool:
        """Drain h11's events into ``events``; True once the message is complete."""
        conn = self._conn
        assert conn is not None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProtocolError(exc.error_status_hint or 400, str(exc)) from None
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Request):
                head = self._head(event)
                self._upgrade_requested = head.upgrade is not None
                self._chunked = head.chunked
                events.append(head)
            elif isinstance(event, h11.Data):
                self._chunks += event.chunk_start
                self._body_size += len(event.data)
                if self._body_size > self._limits.max_body_size:
                    raise ProtocolError(413, "request body larger than max_body_size")
                events.append(BodyChunk(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                trailers = [(n, v) for n, v in event.headers] or None
                events.append(MessageEnd(trailers))
                if self._upgrade_requested:
                    self._upgrade_tail = b""  # filled with the trailing bytes by the caller
                return True
            else:  # pragma: no cover - ConnectionClosed cannot come from receive_data
                raise ProtocolError(400, f"unexpected {event!r}")

    def _head(self, event: h11.Request) -> RequestHead:
        limits = self._limits
        raw = list(event.headers.raw_items())
        size = 0
        headers = []
        for name, value in raw:
            if _BAD_VALUE_BYTE.search(value):
                raise ProtocolError(400, "invalid character in header value")
            size += len(name) + len(value) + 4
            headers.append((name.lower(), value))
        if size > limits.max_header_size:
            raise ProtocolError(431, "header section too large")
        return check_head(
            event.method.decode("latin-1"),
            event.target,
            event.http_version.decode("latin-1"),
            headers,
            limits,
        )


def _check_framing_fields(head: bytes) -> None:
    """Refuse repeated or list-valued framing fields before h11 quietly merges them."""
    lengths = 0
    encodings = 0
    for match in _FRAMING_FIELD.finditer(head):
        if match.group(1).lower() == b"content-length":
            lengths += 1
            if not match.group(2).rstrip(b" \t").isdigit():
                raise ProtocolError(400, "invalid Content-Length")
        else:
            encodings += 1
            if match.group(2).rstrip(b" \t").lower() != b"chunked":
                raise ProtocolError(400, "unsupported Transfer-Encoding")
    if lengths > 1 or encodings > 1:
        raise ProtocolError(400, "repeated framing header")
