"""Split invariance: how bytes are cut into feeds never changes what a parser reports."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.h1strategies import cuts_for
from tests.protocol.h1support import (
    DEFAULT_LIMITS,
    ENGINES,
    SMALL_LIMITS,
    Outcome,
    ParserClass,
    bytewise,
    feed_pieces,
    req,
    split_at,
)
from tests.protocol.test_h1_malformed import ALL as MALFORMED

HOST = b"Host: example.com"
CHUNKED = b"Transfer-Encoding: chunked"

VALID: dict[str, bytes] = {
    "get": req(headers=(HOST, b"Accept: */*", b"X-Spaced:  a b")),
    "http10-keep-alive": req(b"GET /x HTTP/1.0", (b"Connection: keep-alive",)),
    "content-length": req(
        b"POST /p HTTP/1.1", (HOST, b"Content-Length: 26"), b"abcdefghijklmnopqrstuvwxyz"
    ),
    "chunked-ext-trailers": req(
        b"POST /c HTTP/1.1",
        (HOST, CHUNKED),
        b'5;a=1\r\nhello\r\n1;b\r\n \r\nc\r\nchunk\r\nbytes\r\n0;z="q"\r\nX-T: 1\r\nY-T: two\r\n\r\n',
    ),
    "chunked-empty": req(b"POST / HTTP/1.1", (HOST, CHUNKED), b"0\r\n\r\n"),
    "chunked-many": req(
        b"PUT / HTTP/1.1",
        (HOST, CHUNKED),
        b"".join(b"%x\r\n%s\r\n" % (n, bytes([65 + n]) * n) for n in range(1, 20)) + b"0\r\n\r\n",
    ),
    "expect-continue": req(
        b"POST / HTTP/1.1", (HOST, b"Expect: 100-continue", b"Content-Length: 3"), b"abc"
    ),
    "leading-crlf": b"\r\n\r\n" + req(),
    "pipelined": (
        req(b"GET /1 HTTP/1.1")
        + req(b"POST /2 HTTP/1.1", (HOST, b"Content-Length: 4"), b"\r\n\r\n")
        + b"\r\n"
        + req(b"PUT /3 HTTP/1.1", (HOST, CHUNKED), b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
        + req(b"GET /4 HTTP/1.1", (HOST, CHUNKED), b"0\r\n\r\n")
        + req(b"DELETE /5 HTTP/1.1", (HOST, b"Connection: close"))
    ),
    "pipelined-partial": req(b"GET /1 HTTP/1.1")
    + b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc",
    "upgrade-tail": req(headers=(HOST, b"Connection: Upgrade", b"Upgrade: websocket"))
    + b"\x81\x02hi",
    "body-at-limit": req(b"POST / HTTP/1.1", (HOST, b"Content-Length: 256"), bytes(range(256))),
}
VALID_LIMITS = SMALL_LIMITS  # generous enough for every VALID input

MALFORMED_IDS = [
    "cl-and-te",
    "cl-duplicate-different",
    "obs-fold-sp",
    "bare-lf-header",
    "nul-in-value",
    "missing-host-http11",
    "http-2.0",
    "method-connect",
    "chunk-size-non-hex",
    "chunk-data-no-crlf",
    "expect-other",
    "uri-too-long",
    "header-section-too-large",
    "chunked-over-max-body",
]

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def whole(parser_cls: ParserClass, data: bytes) -> Outcome:
    return feed_pieces(parser_cls, [data], VALID_LIMITS)


@pytest.mark.parametrize("name", VALID)
def test_valid_corpus_parses(parser_cls: ParserClass, name: str) -> None:
    outcome = whole(parser_cls, VALID[name])
    assert outcome.ok
    assert outcome.messages
    assert all(m.complete for m in outcome.messages) or name == "pipelined-partial"


@pytest.mark.parametrize("name", VALID)
def test_valid_corpus_bytewise(parser_cls: ParserClass, name: str) -> None:
    data = VALID[name]
    assert feed_pieces(parser_cls, bytewise(data), VALID_LIMITS) == whole(parser_cls, data)


@pytest.mark.parametrize("name", VALID)
def test_valid_corpus_engines_agree(name: str) -> None:
    outcomes = [whole(cls, VALID[name]) for cls in ENGINES]
    assert outcomes[0] == outcomes[1]


@HYPOTHESIS
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_valid_corpus_random_splits(
    parser_cls: ParserClass, name: str, data: st.DataObject
) -> None:
    raw = VALID[name]
    cuts = data.draw(cuts_for(raw), label="cuts")
    assert feed_pieces(parser_cls, split_at(raw, cuts), VALID_LIMITS) == whole(parser_cls, raw)


@HYPOTHESIS
@given(case_id=st.sampled_from(MALFORMED_IDS), data=st.data())
def test_malformed_random_splits(
    parser_cls: ParserClass, case_id: str, data: st.DataObject
) -> None:
    case = MALFORMED[case_id]
    cuts = data.draw(cuts_for(case.data), label="cuts")
    outcome = feed_pieces(parser_cls, split_at(case.data, cuts), case.limits)
    assert outcome.status == case.status


def test_default_limits_are_the_dataclass_defaults() -> None:
    assert type(DEFAULT_LIMITS)() == DEFAULT_LIMITS
