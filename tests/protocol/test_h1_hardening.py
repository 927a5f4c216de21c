"""Issue 14, item 10: methods bext does not know, and bounded chunk extensions.

A proxy forwards a method it does not know (RFC 9110 §9.1 gives 501 to origin servers;
nginx forwards them). llhttp has a fixed method table, so the httptools engine hands the
connection to h11 when llhttp refuses a method: these tests run on both engines, in one
feed, byte by byte and pipelined behind other requests, so the hand-over cannot lose or
repeat a request.
"""

from __future__ import annotations

import pytest

from bext.protocol.events import ParserLimits, ProtocolError, RequestHead
from tests.protocol.h1support import (
    DEFAULT_LIMITS,
    SMALL_LIMITS,
    ParserClass,
    bytewise,
    feed_pieces,
    parse,
    req,
    split_at,
)

HOST = b"Host: a"
CHUNKED = b"Transfer-Encoding: chunked"

UNKNOWN = [b"FOO", b"SOURCE", b"SETUP", b"M-SEARCH", b"BREW", b"X_Y.Z", b"MKWORKSPACE"]


@pytest.mark.parametrize("method", UNKNOWN)
def test_unknown_token_method_is_a_request(parser_cls: ParserClass, method: bytes) -> None:
    data = req(method + b" /x HTTP/1.1", (HOST,))
    for pieces in ([data], bytewise(data)):
        outcome = feed_pieces(parser_cls, pieces)
        assert outcome.ok, outcome.status
        (m,) = outcome.messages
        assert (m.method, m.target, m.complete) == (method.decode(), b"/x", True)


@pytest.mark.parametrize("cut", [None, 10, 45, 60, 75, 90])
def test_unknown_method_pipelined_behind_and_before_others(
    parser_cls: ParserClass, cut: int | None
) -> None:
    """The requests before the unknown one are not repeated, those after it not lost."""
    data = (
        req(b"GET /1 HTTP/1.1", (HOST,))
        + req(b"POST /2 HTTP/1.1", (HOST, b"Content-Length: 5"), b"hello")
        + req(b"FOO /3 HTTP/1.1", (HOST, CHUNKED), b"3;ext=1\r\nabc\r\n0\r\n\r\n")
        + req(b"GET /4 HTTP/1.1", (HOST,))
    )
    pieces = [data] if cut is None else split_at(data, [cut, cut + 30, cut + 60])
    outcome = feed_pieces(parser_cls, pieces)
    assert outcome.ok, outcome.status
    got = [(m.method, m.target, m.body, m.complete) for m in outcome.messages]
    assert got == [
        ("GET", b"/1", b"", True),
        ("POST", b"/2", b"hello", True),
        ("FOO", b"/3", b"abc", True),
        ("GET", b"/4", b"", True),
    ]


def test_connection_keeps_working_after_an_unknown_method(parser_cls: ParserClass) -> None:
    parser = parser_cls(DEFAULT_LIMITS)
    events = parser.feed(req(b"SOURCE /a HTTP/1.1", (HOST,)) + req(b"FOO /b HTTP/1.1", (HOST,)))
    assert [e.method for e in events if isinstance(e, RequestHead)] == ["SOURCE", "FOO"]
    later = parser.feed(req(b"PUT /c HTTP/1.1", (HOST, b"Content-Length: 2"), b"ok"))
    assert [type(e).__name__ for e in later] == ["RequestHead", "BodyChunk", "MessageEnd"]
    parser.feed(b"GET /d HT")
    assert parser.in_head
    (head, _end) = parser.feed(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead) and head.target == b"/d"


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"get / HTTP/1.1", 400),  # a token, but lower case: refused (as nginx)
        (b"G@T / HTTP/1.1", 400),
        (b"PRI / HTTP/1.1", 400),  # the HTTP/2 preface's method
        (b"FOO / HTTP/3.0", 505),
        (b"CONNECT a:443 HTTP/1.1", 405),
    ],
)
def test_methods_still_refused(parser_cls: ParserClass, line: bytes, status: int) -> None:
    assert parse(parser_cls, req(line, (HOST,))).status == status
    # ... also right behind a valid request, which is still answered first
    outcome = parse(parser_cls, req(b"GET /ok HTTP/1.1", (HOST,)) + req(line, (HOST,)))
    assert outcome.status == status
    assert [m.target for m in outcome.messages] == [b"/ok"]


# -- chunk extensions ----------------------------------------------------------------------


def _until_error(parser_cls: ParserClass, limits: ParserLimits, pieces: list[bytes]) -> int:
    parser = parser_cls(limits)
    for piece in pieces:
        try:
            parser.feed(piece)
        except ProtocolError as exc:
            return exc.status
        if parser.pending_error is not None:
            return parser.pending_error.status
    pytest.fail("the parser accepted it all")


def test_first_chunk_extension_is_bounded_with_400(parser_cls: ParserClass) -> None:
    """The first chunk's size line, fed in pieces right after the head: 400, early."""
    limits = SMALL_LIMITS
    head = req(b"POST / HTTP/1.1", (HOST, CHUNKED)) + b"1;ext="
    pieces = [head] + [b"e" * 16] * (2 * limits.max_header_size // 16)
    assert _until_error(parser_cls, limits, pieces) == 400


def test_many_long_chunk_extensions_are_bounded_with_400(parser_cls: ParserClass) -> None:
    """Each line is short of any per-line buffer limit; together they are far too much."""
    limits = SMALL_LIMITS
    chunk = b"1;" + b"e" * 200 + b"\r\nx\r\n"
    pieces = [req(b"POST / HTTP/1.1", (HOST, CHUNKED))] + [chunk] * 60 + [b"0\r\n\r\n"]
    assert _until_error(parser_cls, limits, pieces) == 400


def test_modest_chunk_extensions_pass(parser_cls: ParserClass) -> None:
    chunks = b"".join(b'1;name=value;q="quoted"\r\nx\r\n' for _ in range(100))
    data = req(b"POST / HTTP/1.1", (HOST, CHUNKED), chunks + b"0\r\n\r\n")
    outcome = feed_pieces(parser_cls, split_at(data, range(0, len(data), 97)))
    assert outcome.ok and outcome.messages[0].body == b"x" * 100


def test_long_trailers_are_still_431(parser_cls: ParserClass) -> None:
    limits = SMALL_LIMITS
    head = req(b"POST / HTTP/1.1", (HOST, CHUNKED)) + b"1\r\nx\r\n0\r\nX-T: "
    pieces = [head] + [b"v" * 16] * (4 * limits.max_header_size // 16)
    assert _until_error(parser_cls, limits, pieces) == 431
