"""Valid requests: both engines must produce the same, correct events."""

from __future__ import annotations

import pytest

from bext.protocol.events import BodyChunk, MessageEnd, ParserLimits, ProtocolError, RequestHead
from bext.protocol.h1_rules import KNOWN_METHODS
from tests.protocol.gaps import mark_gap
from tests.protocol.h1support import (
    Message,
    ParserClass,
    bytewise,
    expect_error,
    feed_pieces,
    parse_ok,
    req,
)

HOST = b"Host: example.com"
CHUNKED = b"Transfer-Encoding: chunked"


def only(messages: tuple[Message, ...]) -> Message:
    assert len(messages) == 1, messages
    assert messages[0].complete
    return messages[0]


def post_with(header: bytes, body: bytes) -> bytes:
    return req(b"POST / HTTP/1.1", (HOST, header), body)


# -- request heads --------------------------------------------------------------------


def test_get_with_headers(parser_cls: ParserClass) -> None:
    data = req(
        headers=(
            HOST,
            b"User-Agent: curl/8.5.0",
            b"ACCEPT:*/*",
            b"X-Spaced:   a  b\tc",
            b"X-Tab:\tv",
            b"X-Empty:",
            b"X-Obs-Text: caf\xe9",
            b"x-dup: 1",
            b"X-Dup: 2",
        )
    )
    message = only(parse_ok(parser_cls, data))
    assert message.method == "GET"
    assert message.target == b"/"
    assert message.http_version == "1.1"
    assert message.headers == (
        (b"host", b"example.com"),
        (b"user-agent", b"curl/8.5.0"),
        (b"accept", b"*/*"),
        (b"x-spaced", b"a  b\tc"),
        (b"x-tab", b"v"),
        (b"x-empty", b""),
        (b"x-obs-text", b"caf\xe9"),
        (b"x-dup", b"1"),
        (b"x-dup", b"2"),
    )
    assert message.keep_alive is True
    assert message.content_length is None
    assert message.chunked is False
    assert message.expect_continue is False
    assert message.upgrade is None
    assert message.body == b""
    assert message.trailers is None


def test_event_types(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    events = parser.feed(req(b"POST /p?q=1 HTTP/1.1", (HOST, b"Content-Length: 2"), b"hi"))
    assert [type(e) for e in events] == [RequestHead, BodyChunk, MessageEnd]
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.has_body
    assert head.target == b"/p?q=1"


@pytest.mark.parametrize("value", [b"v ", b"v\t", b"v \t ", b"  v  "])
def test_trailing_ows_is_stripped(
    request: pytest.FixtureRequest, parser_cls: ParserClass, value: bytes
) -> None:
    message = only(parse_ok(parser_cls, b"GET / HTTP/1.1\r\nHost: a\r\nX:" + value + b"\r\n\r\n"))
    assert message.headers[1] == (b"x", b"v")


def test_content_length_with_ows(request: pytest.FixtureRequest, parser_cls: ParserClass) -> None:
    """OWS around a field value is not part of it, Content-Length included."""
    message = only(parse_ok(parser_cls, post_with(b"Content-Length:\t3\t", b"abc")))
    assert (message.content_length, message.body) == (3, b"abc")


def test_transfer_encoding_with_ows(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    message = only(parse_ok(parser_cls, post_with(b"Transfer-Encoding:  chunked  ", b"0\r\n\r\n")))
    assert message.chunked


def test_transfer_encoding_case_insensitive_value_kept(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    mark_gap(request, parser_cls, "te-value-rewritten")
    message = only(
        parse_ok(parser_cls, post_with(b"Transfer-Encoding: Chunked", b"1\r\nx\r\n0\r\n\r\n"))
    )
    assert message.chunked
    assert message.body == b"x"
    assert message.headers[1] == (b"transfer-encoding", b"Chunked")


# -- connection persistence -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"close", False),
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"foo, close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.1", b"x-close", True),
    ],
)
def test_keep_alive(
    parser_cls: ParserClass, version: bytes, connection: bytes | None, keep_alive: bool
) -> None:
    headers = [HOST]
    if connection is not None:
        headers.append(b"Connection: " + connection)
    message = only(parse_ok(parser_cls, req(b"GET / HTTP/" + version, headers)))
    assert message.http_version == version.decode()
    assert message.keep_alive is keep_alive


def test_http10_needs_no_host(parser_cls: ParserClass) -> None:
    message = only(parse_ok(parser_cls, b"GET /old HTTP/1.0\r\n\r\n"))
    assert (message.http_version, message.headers, message.keep_alive) == ("1.0", (), False)


# -- bodies ---------------------------------------------------------------------------


def test_content_length_body(parser_cls: ParserClass) -> None:
    data = req(b"POST /upload HTTP/1.1", (HOST, b"Content-Length: 11"), b"hello world")
    message = only(parse_ok(parser_cls, data))
    assert (message.content_length, message.chunked, message.body) == (11, False, b"hello world")


def test_content_length_zero(parser_cls: ParserClass) -> None:
    message = only(parse_ok(parser_cls, req(b"POST / HTTP/1.1", (HOST, b"Content-Length: 0"))))
    assert (message.content_length, message.body) == (0, b"")


def test_content_length_leading_zeros(parser_cls: ParserClass) -> None:
    data = req(b"POST / HTTP/1.1", (HOST, b"Content-Length: 003"), b"abc")
    assert only(parse_ok(parser_cls, data)).body == b"abc"


def test_chunked_body_with_extensions_and_trailers(parser_cls: ParserClass) -> None:
    body = (
        b"5;name=value\r\nhello\r\n"
        b'1;a;b="quoted ext"\r\n \r\n'
        b"A\r\n0123456789\r\n"
        b"0;last\r\n"
        b"X-Checksum: abc\r\n"
        b"X-Other:  two words\r\n"
        b"\r\n"
    )
    message = only(parse_ok(parser_cls, req(b"POST / HTTP/1.1", (HOST, CHUNKED), body)))
    assert message.chunked
    assert message.content_length is None
    assert message.body == b"hello 0123456789"
    assert message.trailers == ((b"x-checksum", b"abc"), (b"x-other", b"two words"))


def test_chunk_size_hex_digits(parser_cls: ParserClass) -> None:
    body = b"00a\r\n" + b"x" * 10 + b"\r\nF\r\n" + b"y" * 15 + b"\r\n000\r\n\r\n"
    message = only(parse_ok(parser_cls, req(b"POST / HTTP/1.1", (HOST, CHUNKED), body)))
    assert message.body == b"x" * 10 + b"y" * 15


def test_empty_chunked_body(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    events = parser.feed(req(b"POST / HTTP/1.1", (HOST, CHUNKED), b"0\r\n\r\n"))
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    head, end = events
    assert isinstance(head, RequestHead) and isinstance(end, MessageEnd)
    assert head.chunked and head.has_body
    assert end.trailers is None


@pytest.mark.parametrize(
    ("version", "value", "flag"),
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-Continue", True),
        (b"1.0", b"100-continue", False),
    ],
)
def test_expect_continue(parser_cls: ParserClass, version: bytes, value: bytes, flag: bool) -> None:
    data = req(b"POST / HTTP/" + version, (HOST, b"Expect: " + value, b"Content-Length: 1"))
    parser = parser_cls(ParserLimits())
    events = parser.feed(data)
    # The head is delivered before the body so the server can send 100 Continue.
    assert len(events) == 1
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.expect_continue is flag
    assert not parser.in_head
    assert [type(e) for e in parser.feed(b"x")] == [BodyChunk, MessageEnd]


# -- request targets and methods ------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/",
        b"/a/b/c.html",
        b"/search?q=a+b&x=%20",
        b"http://example.com/x?y",
        b"https://example.com:8443/",
        b"/%E2%82%AC",
    ],
)
def test_targets(parser_cls: ParserClass, target: bytes) -> None:
    message = only(parse_ok(parser_cls, req(b"GET " + target + b" HTTP/1.1")))
    assert message.target == target


def test_absolute_form_scheme_is_case_insensitive(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    message = only(parse_ok(parser_cls, req(b"GET HTTP://example.com/x HTTP/1.1")))
    assert message.target == b"HTTP://example.com/x"


def test_options_asterisk(parser_cls: ParserClass) -> None:
    message = only(parse_ok(parser_cls, req(b"OPTIONS * HTTP/1.1")))
    assert (message.method, message.target) == ("OPTIONS", b"*")


@pytest.mark.parametrize("method", sorted(KNOWN_METHODS - {"CONNECT"}))
def test_known_methods(parser_cls: ParserClass, method: str) -> None:
    message = only(parse_ok(parser_cls, req(method.encode() + b" /r HTTP/1.1")))
    assert message.method == method


# -- several requests on one connection -----------------------------------------------

PIPELINE = (
    req(b"GET /1 HTTP/1.1")
    + req(b"POST /2 HTTP/1.1", (HOST, b"Content-Length: 5"), b"12345")
    + req(b"PUT /3 HTTP/1.1", (HOST, CHUNKED), b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
    + req(b"PATCH /4 HTTP/1.1", (HOST, b"Content-Length: 0"))
    + req(b"GET /5 HTTP/1.1")
)


def test_pipelined_in_one_feed(parser_cls: ParserClass) -> None:
    messages = parse_ok(parser_cls, PIPELINE)
    assert [(m.method, m.target, m.body, m.trailers, m.complete) for m in messages] == [
        ("GET", b"/1", b"", None, True),
        ("POST", b"/2", b"12345", None, True),
        ("PUT", b"/3", b"abc", ((b"x-t", b"1"),), True),
        ("PATCH", b"/4", b"", None, True),
        ("GET", b"/5", b"", None, True),
    ]
    assert messages == feed_pieces(parser_cls, bytewise(PIPELINE)).messages


def test_pipelined_partial_second_request(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    first = req(b"GET /1 HTTP/1.1")
    events = parser.feed(first + b"GET /2 HT")
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    assert parser.in_head
    events = parser.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    assert not parser.in_head


@pytest.mark.parametrize("prefix", [b"\r\n", b"\r\n\r\n\r\n"])
def test_leading_empty_lines_are_ignored(parser_cls: ParserClass, prefix: bytes) -> None:
    """RFC 9112 §2.2: ignore at least one empty line (CRLF) before a request-line."""
    first = req(b"GET /1 HTTP/1.1")
    second = req(b"GET /2 HTTP/1.1")
    messages = parse_ok(parser_cls, prefix + first + prefix + second)
    assert [m.target for m in messages] == [b"/1", b"/2"]
    parser = parser_cls(ParserLimits())
    assert parser.feed(prefix) == []
    assert not parser.in_head


def test_bare_lf_between_pipelined_requests_is_refused(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    mark_gap(request, parser_cls, "stray-cr-lf-before-request")
    parser = parser_cls(ParserLimits())
    parser.feed(post_with(b"Content-Length: 1", b"x"))
    expect_error(parser, b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400)


@pytest.mark.parametrize(
    "first",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
    ],
)
def test_bytes_after_last_request_do_not_lose_it(
    request: pytest.FixtureRequest, parser_cls: ParserClass, first: bytes
) -> None:
    """A non-persistent request is complete; whatever follows must not discard it.

    The server will not process further requests (RFC 9112 §9.6), but the one already
    received must still be delivered, not turned into a 400.
    """
    parser = parser_cls(ParserLimits())
    events = parser.feed(first + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(events[0], RequestHead)
    assert events[0].keep_alive is False
    assert any(isinstance(e, MessageEnd) for e in events)


def test_large_body_then_next_head_in_one_feed(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    """The head-size limit counts head bytes, not the preceding body in the same feed."""
    limits = ParserLimits(max_uri_length=64, max_header_size=512, max_body_size=4096)
    body = b"x" * 2000  # larger than the whole head budget, well within max_body_size
    data = post_with(b"Content-Length: %d" % len(body), body) + b"GET /next HT"
    parser = parser_cls(limits)
    events = parser.feed(data)
    assert [type(e) for e in events][-1] is MessageEnd
    assert parser.in_head
    events = parser.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(events[0], RequestHead) and events[0].target == b"/next"


# -- in_head (the slowloris window) ---------------------------------------------------


def test_in_head_tracks_the_head(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    assert not parser.in_head
    assert parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-") == []
    assert parser.in_head
    events = parser.feed(b"Length: 4\r\n\r\nab")
    assert [type(e) for e in events] == [RequestHead, BodyChunk]
    assert not parser.in_head  # waiting for the body is not the head window
    assert [type(e) for e in parser.feed(b"cd")] == [BodyChunk, MessageEnd]
    assert not parser.in_head


# -- upgrade --------------------------------------------------------------------------

UPGRADE = req(headers=(HOST, b"Connection: Upgrade", b"Upgrade: websocket"))


def test_upgrade_hands_over_following_bytes(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    events = parser.feed(UPGRADE + b"\x81\x85frame")
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.upgrade == b"websocket"
    assert parser.upgrade_pending
    assert parser.feed(b"more") == []  # buffered for the new protocol, not parsed
    assert parser.take_upgrade_tail() == b"\x81\x85framemore"
    assert not parser.upgrade_pending
    with pytest.raises(ProtocolError):
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_upgrade_split_bytewise(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    for byte in bytewise(UPGRADE + b"tail"):
        parser.feed(byte)
    assert parser.upgrade_pending
    assert parser.take_upgrade_tail() == b"tail"


def test_upgrade_with_nothing_after(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    parser.feed(UPGRADE)
    assert parser.upgrade_pending
    assert parser.take_upgrade_tail() == b""


def test_decline_upgrade_resumes_pipelined_request(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    parser.feed(UPGRADE + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\nPOST /third HT")
    assert parser.upgrade_pending
    events = parser.decline_upgrade()
    assert not parser.upgrade_pending
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    assert isinstance(events[0], RequestHead) and events[0].target == b"/next"
    events = parser.feed(b"TP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz")
    assert [type(e) for e in events] == [RequestHead, BodyChunk, MessageEnd]


def test_decline_upgrade_with_nothing_pending(parser_cls: ParserClass) -> None:
    parser = parser_cls(ParserLimits())
    parser.feed(UPGRADE)
    assert parser.decline_upgrade() == []
    assert [type(e) for e in parser.feed(req())] == [RequestHead, MessageEnd]


@pytest.mark.parametrize("connection", [None, b"keep-alive", b"x-upgrade"])
def test_upgrade_field_without_connection_upgrade_is_ignored(
    parser_cls: ParserClass, connection: bytes | None
) -> None:
    headers = [HOST, b"Upgrade: websocket"]
    if connection is not None:
        headers.append(b"Connection: " + connection)
    parser = parser_cls(ParserLimits())
    events = parser.feed(req(headers=headers) + req(b"GET /2 HTTP/1.1"))
    assert [type(e) for e in events] == [RequestHead, MessageEnd] * 2
    assert isinstance(events[0], RequestHead) and events[0].upgrade is None
    assert not parser.upgrade_pending


@pytest.mark.parametrize("connection", [b"keep-alive, Upgrade", b"UPGRADE", b"upgrade ,close"])
def test_upgrade_connection_token_list(parser_cls: ParserClass, connection: bytes) -> None:
    parser = parser_cls(ParserLimits())
    events = parser.feed(req(headers=(HOST, b"Connection: " + connection, b"Upgrade: h2c")))
    assert isinstance(events[0], RequestHead) and events[0].upgrade == b"h2c"
    assert parser.upgrade_pending


@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 5", b"hello"),
        (b"Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
)
def test_upgrade_request_with_a_body_is_refused(
    parser_cls: ParserClass, framing: bytes, body: bytes
) -> None:
    """llhttp hands everything after an Upgrade head to the new protocol, body included.

    Declining the upgrade would then parse that body as requests (smuggling: a body of
    ``GET /admin ...`` becomes a request), so both engines refuse the combination.
    """
    head = req(b"POST /ws HTTP/1.1", (HOST, framing, b"Connection: Upgrade", b"Upgrade: ws"))
    parser = parser_cls(ParserLimits())
    with pytest.raises(ProtocolError) as info:
        parser.feed(head + body + b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert info.value.status == 400


def test_upgrade_ignored_in_http10(request: pytest.FixtureRequest, parser_cls: ParserClass) -> None:
    data = b"GET / HTTP/1.0\r\nConnection: Upgrade, keep-alive\r\nUpgrade: websocket\r\n\r\n"
    parser = parser_cls(ParserLimits())
    events = parser.feed(data + b"GET /2 HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], RequestHead) and events[0].upgrade is None
    assert not parser.upgrade_pending
    assert [type(e) for e in events] == [RequestHead, MessageEnd] * 2


def test_empty_upgrade_is_no_upgrade(
    request: pytest.FixtureRequest, parser_cls: ParserClass
) -> None:
    parser = parser_cls(ParserLimits())
    events = parser.feed(req(headers=(HOST, b"Connection: Upgrade", b"Upgrade:")) + req())
    assert isinstance(events[0], RequestHead) and events[0].upgrade is None
    assert not parser.upgrade_pending
    assert [type(e) for e in events] == [RequestHead, MessageEnd] * 2
