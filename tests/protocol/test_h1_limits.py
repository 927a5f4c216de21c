"""ParserLimits: exact boundaries, and bounded memory while bytes trickle in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bext.protocol.events import BodyChunk, MessageEnd, ParserLimits, ProtocolError, RequestHead
from tests.protocol.h1support import (
    DEFAULT_LIMITS,
    SMALL_LIMITS,
    ParserClass,
    expect_error,
    parse_ok,
    req,
)

HOST = b"Host: a"
CHUNKED = b"Transfer-Encoding: chunked"


# -- exact boundaries: the limit itself is allowed --------------------------------------


def test_uri_at_limit(parser_cls: ParserClass) -> None:
    target = b"/" + b"a" * (SMALL_LIMITS.max_uri_length - 1)
    (message,) = parse_ok(parser_cls, req(b"GET " + target + b" HTTP/1.1", (HOST,)), SMALL_LIMITS)
    assert message.target == target


def test_field_count_at_limit(parser_cls: ParserClass) -> None:
    headers = (HOST, *[b"X-%d: 1" % i for i in range(SMALL_LIMITS.max_headers - 1)])
    (message,) = parse_ok(parser_cls, req(headers=headers), SMALL_LIMITS)
    assert len(message.headers) == SMALL_LIMITS.max_headers


def test_header_section_at_limit(parser_cls: ParserClass) -> None:
    # Both engines count len(name) + len(value) + 4 per field.
    used = len(b"host") + len(b"a") + 4 + len(b"x") + 4
    value = b"v" * (SMALL_LIMITS.max_header_size - used)
    parse_ok(parser_cls, req(headers=(HOST, b"X: " + value)), SMALL_LIMITS)
    expect_error(parser_cls(SMALL_LIMITS), req(headers=(HOST, b"X: " + value + b"v")), 431)


def test_content_length_at_limit(parser_cls: ParserClass) -> None:
    size = SMALL_LIMITS.max_body_size
    data = req(b"POST / HTTP/1.1", (HOST, b"Content-Length: %d" % size), b"x" * size)
    (message,) = parse_ok(parser_cls, data, SMALL_LIMITS)
    assert len(message.body) == size


def test_chunked_at_limit(parser_cls: ParserClass) -> None:
    body = b"80\r\n" + b"x" * 128 + b"\r\n" + b"80\r\n" + b"y" * 128 + b"\r\n0\r\n\r\n"
    (message,) = parse_ok(parser_cls, req(b"POST / HTTP/1.1", (HOST, CHUNKED), body), SMALL_LIMITS)
    assert len(message.body) == SMALL_LIMITS.max_body_size


def test_limits_apply_per_message(parser_cls: ParserClass) -> None:
    size = SMALL_LIMITS.max_body_size
    headers = (HOST, *[b"X-%d: 1" % i for i in range(SMALL_LIMITS.max_headers - 2)])
    one = req(b"POST / HTTP/1.1", (*headers, b"Content-Length: %d" % size), b"x" * size)
    messages = parse_ok(parser_cls, one * 3, SMALL_LIMITS)
    assert [len(m.body) for m in messages] == [size] * 3


# -- body size --------------------------------------------------------------------------


def test_content_length_over_limit_is_refused_at_the_head(parser_cls: ParserClass) -> None:
    parser = parser_cls(SMALL_LIMITS)
    head = req(b"POST / HTTP/1.1", (HOST, b"Content-Length: %d" % (SMALL_LIMITS.max_body_size + 1)))
    # No body byte has been sent: the head alone is refused, nothing is delivered.
    expect_error(parser, head, 413)


def test_chunked_over_limit_is_refused_while_streaming(parser_cls: ParserClass) -> None:
    parser = parser_cls(SMALL_LIMITS)
    events = parser.feed(req(b"POST / HTTP/1.1", (HOST, CHUNKED)))
    assert [type(e) for e in events] == [RequestHead]
    received = 0
    for _ in range(SMALL_LIMITS.max_body_size // 64):
        events = parser.feed(b"40\r\n" + b"x" * 64 + b"\r\n")
        assert all(isinstance(e, BodyChunk) for e in events)
        received += sum(len(e.data) for e in events if isinstance(e, BodyChunk))
    assert received == SMALL_LIMITS.max_body_size
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"1\r\nx\r\n")
    assert info.value.status == 413


def test_one_huge_declared_chunk_is_cut_at_the_limit(parser_cls: ParserClass) -> None:
    parser = parser_cls(SMALL_LIMITS)
    parser.feed(req(b"POST / HTTP/1.1", (HOST, CHUNKED)) + b"ffffffff\r\n")
    fed = 0
    with pytest.raises(ProtocolError) as info:
        while fed < 4 * SMALL_LIMITS.max_body_size:
            parser.feed(b"x" * 32)
            fed += 32
    assert info.value.status == 413
    assert fed <= SMALL_LIMITS.max_body_size


def test_content_length_body_in_small_feeds(parser_cls: ParserClass) -> None:
    size = SMALL_LIMITS.max_body_size
    parser = parser_cls(SMALL_LIMITS)
    parser.feed(req(b"POST / HTTP/1.1", (HOST, b"Content-Length: %d" % size)))
    events = []
    for _ in range(size // 16):
        events += parser.feed(b"z" * 16)
    assert isinstance(events[-1], MessageEnd)
    assert b"".join(e.data for e in events if isinstance(e, BodyChunk)) == b"z" * size


# -- bounded memory: an endless head or trailer in small pieces -------------------------


def trickle(prefix: bytes, filler: bytes, piece: int) -> Iterator[bytes]:
    yield prefix
    while True:
        yield filler * piece


def fed_until_error(
    parser_cls: ParserClass, limits: ParserLimits, pieces: Iterator[bytes], cap: int
) -> tuple[int, int]:
    """Feed pieces until ProtocolError; return (status, bytes fed). Fails past ``cap``."""
    parser = parser_cls(limits)
    fed = 0
    for data in pieces:
        fed += len(data)
        try:
            parser.feed(data)
        except ProtocolError as exc:
            return exc.status, fed
        if fed > cap:
            pytest.fail(f"no ProtocolError after {fed} bytes (cap {cap})")
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("limits", "piece"),
    [(SMALL_LIMITS, 1), (SMALL_LIMITS, 7), (DEFAULT_LIMITS, 64), (DEFAULT_LIMITS, 4096)],
    ids=["small-1", "small-7", "default-64", "default-4096"],
)
@pytest.mark.parametrize(
    "prefix",
    [b"GET / HTTP/1.1\r\nHost: a\r\nX-Huge: ", b"GET / HTTP/1.1\r\nHost: a\r\nX-Huge"],
    ids=["value", "name"],
)
def test_endless_header_is_bounded(
    parser_cls: ParserClass, limits: ParserLimits, piece: int, prefix: bytes
) -> None:
    cap = 2 * limits.max_header_size
    status, fed = fed_until_error(parser_cls, limits, trickle(prefix, b"v", piece), cap)
    assert status == 431
    assert fed <= cap


@pytest.mark.parametrize(("limits", "piece"), [(SMALL_LIMITS, 1), (DEFAULT_LIMITS, 100)])
def test_endless_target_is_bounded(
    parser_cls: ParserClass, limits: ParserLimits, piece: int
) -> None:
    cap = 2 * (limits.max_uri_length + limits.max_header_size)
    status, fed = fed_until_error(parser_cls, limits, trickle(b"GET /", b"a", piece), cap)
    assert status == 414
    assert fed <= cap


@pytest.mark.parametrize("piece", [1, 64])
def test_endless_trailer_is_bounded(
    request: pytest.FixtureRequest, parser_cls: ParserClass, piece: int
) -> None:
    limits = SMALL_LIMITS
    prefix = req(b"POST / HTTP/1.1", (HOST, CHUNKED)) + b"0\r\nX-Trailer: "
    cap = len(prefix) + 2 * limits.max_header_size
    status, fed = fed_until_error(parser_cls, limits, trickle(prefix, b"v", piece), cap)
    assert status == 431
    assert fed <= cap


def test_endless_chunk_extension_is_bounded(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    """RFC 9112 §7.1.1: a server ought to limit chunk extensions and answer 4xx."""
    limits = SMALL_LIMITS
    prefix = req(b"POST / HTTP/1.1", (HOST, CHUNKED)) + b"1;ext="
    cap = len(prefix) + 2 * (limits.max_header_size + limits.max_uri_length)
    status, _fed = fed_until_error(parser_cls, limits, trickle(prefix, b"e", 16), cap)
    assert 400 <= status < 500


def test_empty_lines_between_requests_do_not_accumulate(parser_cls: ParserClass) -> None:
    parser = parser_cls(SMALL_LIMITS)
    for _ in range(200):
        assert parser.feed(b"\r\n" * 16) == []
    assert not parser.in_head
    assert len(parser.feed(req(headers=(HOST,)))) == 2
