"""Shared helpers for the HTTP/1.1 parser conformance suite.

Both engines emit the same event vocabulary, but not necessarily the same *pieces*: a body
may arrive as one ``BodyChunk`` or as many, depending on how the bytes were fed. Tests
therefore compare a normalised form: one :class:`Message` per request, with the body
concatenated, plus the error status (if any) the parser ended in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

from bext.protocol.events import (
    BodyChunk,
    Event,
    MessageEnd,
    ParserLimits,
    ProtocolError,
    RequestHead,
)
from bext.protocol.h1 import HttptoolsParser
from bext.protocol.h1_ref import H11Parser

Parser = HttptoolsParser | H11Parser
ParserClass = type[HttptoolsParser] | type[H11Parser]

ENGINES: tuple[ParserClass, ...] = (HttptoolsParser, H11Parser)
ENGINE_NAMES: dict[ParserClass, str] = {HttptoolsParser: "httptools", H11Parser: "h11"}

Fields = tuple[tuple[bytes, bytes], ...]

DEFAULT_LIMITS = ParserLimits()

SMALL_LIMITS = ParserLimits(
    max_uri_length=64, max_header_size=512, max_headers=8, max_body_size=256
)
"""Limits small enough that limit tests need only a few hundred bytes."""


@dataclass(frozen=True)
class Message:
    """One request as a handler would see it, independent of how bytes were split."""

    method: str
    target: bytes
    http_version: str
    headers: Fields
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bytes | None
    body: bytes = b""
    trailers: Fields | None = None
    complete: bool = False


@dataclass(frozen=True)
class Outcome:
    """Everything a parser produced for one input."""

    messages: tuple[Message, ...]
    status: int | None  # ProtocolError.status, None if the parser never raised
    upgrade_tail: bytes | None = None  # take_upgrade_tail() when an upgrade is pending
    in_head: bool = False  # a head had started but was not complete when input ran out

    @property
    def ok(self) -> bool:
        return self.status is None


def head_message(head: RequestHead) -> Message:
    return Message(
        method=head.method,
        target=head.target,
        http_version=head.http_version,
        headers=tuple(head.headers),
        keep_alive=head.keep_alive,
        content_length=head.content_length,
        chunked=head.chunked,
        expect_continue=head.expect_continue,
        upgrade=head.upgrade,
    )


class Collector:
    """Folds an event stream into :class:`Message` objects, checking the event grammar.

    The grammar is ``(RequestHead BodyChunk* MessageEnd)*``; anything else is a parser bug.
    """

    def __init__(self) -> None:
        self.done: list[Message] = []
        self._head: Message | None = None
        self._body: list[bytes] = []

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, RequestHead):
                assert self._head is None, "RequestHead before the previous MessageEnd"
                self._head = head_message(event)
                self._body = []
            elif isinstance(event, BodyChunk):
                assert self._head is not None, "BodyChunk outside a message"
                assert isinstance(event.data, bytes), type(event.data)
                assert event.data, "empty BodyChunk"
                self._body.append(event.data)
            elif isinstance(event, MessageEnd):
                assert self._head is not None, "MessageEnd outside a message"
                trailers = None if event.trailers is None else tuple(event.trailers)
                self.done.append(self._finish(trailers, complete=True))
                self._head = None
            else:  # pragma: no cover - the type says this cannot happen
                raise AssertionError(f"unknown event {event!r}")

    def _finish(self, trailers: Fields | None, complete: bool) -> Message:
        assert self._head is not None
        head = self._head
        return Message(
            **{
                **head.__dict__,
                "body": b"".join(self._body),
                "trailers": trailers,
                "complete": complete,
            }
        )

    def messages(self) -> tuple[Message, ...]:
        """Completed messages plus the one in progress (``complete=False``), if any."""
        if self._head is None:
            return tuple(self.done)
        return (*self.done, self._finish(None, complete=False))


def feed_pieces(
    cls: ParserClass, pieces: Iterable[bytes], limits: ParserLimits = DEFAULT_LIMITS
) -> Outcome:
    """Feed ``pieces`` one by one; stop at the first :class:`ProtocolError`.

    A fault behind complete requests is reported through ``pending_error`` after those
    requests' events; it counts as the outcome's error just the same.
    """
    parser = cls(limits)
    collector = Collector()
    for piece in pieces:
        try:
            collector.add(parser.feed(piece))
        except ProtocolError as exc:
            assert 400 <= exc.status <= 599, exc.status
            return Outcome(collector.messages(), exc.status)
        if parser.pending_error is not None:
            return Outcome(collector.messages(), parser.pending_error.status)
    in_head = parser.in_head
    tail = parser.take_upgrade_tail() if parser.upgrade_pending else None
    return Outcome(collector.messages(), None, tail, in_head)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (clamped, deduplicated, empty pieces dropped)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def parse(cls: ParserClass, data: bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Outcome:
    return feed_pieces(cls, [data], limits)


def parse_ok(
    cls: ParserClass, data: bytes, limits: ParserLimits = DEFAULT_LIMITS
) -> tuple[Message, ...]:
    """Parse ``data`` in one feed and return the messages; fail the test on an error."""
    outcome = parse(cls, data, limits)
    assert outcome.ok, f"unexpected ProtocolError {outcome.status} for {data!r}"
    return outcome.messages


def expect_error(parser: Parser, data: bytes | Sequence[bytes], status: int) -> ProtocolError:
    """Feed ``data`` (one buffer or pieces) and require a ProtocolError with ``status``."""
    pieces = [data] if isinstance(data, bytes) else data
    with pytest.raises(ProtocolError) as info:
        for piece in pieces:
            parser.feed(piece)
    assert info.value.status == status, f"{info.value.status} {info.value.reason!r}"
    return info.value


def req(
    line: bytes = b"GET / HTTP/1.1",
    headers: Sequence[bytes] = (b"Host: example.com",),
    body: bytes = b"",
) -> bytes:
    """A request from a start line, raw header lines and raw body bytes."""
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
