"""Malformed requests: each must raise ProtocolError with the exact status, in both engines.

Statuses follow bext's rules (:mod:`bext.protocol.h1_rules`) and RFC 9112 / RFC 9110. Where
an engine departs from them the expectation stays as it should be and the engine's gap (see
:mod:`tests.protocol.gaps`) marks that engine's case xfail(strict=True).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bext.protocol.events import ParserLimits, ProtocolError
from tests.protocol.gaps import mark_gap
from tests.protocol.h1support import (
    DEFAULT_LIMITS,
    SMALL_LIMITS,
    ParserClass,
    bytewise,
    expect_error,
    feed_pieces,
    req,
)

HOST = b"Host: example.com"
CHUNKED = b"Transfer-Encoding: chunked"


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    status: int
    gaps: tuple[str, ...] = ()
    limits: ParserLimits = DEFAULT_LIMITS


def post(*headers: bytes, body: bytes = b"") -> bytes:
    return req(b"POST / HTTP/1.1", (HOST, *headers), body)


def chunked(body: bytes) -> bytes:
    return post(CHUNKED, body=body)


def line(request_line: bytes) -> bytes:
    return req(request_line, (HOST,))


def field(raw: bytes) -> bytes:
    return req(b"GET / HTTP/1.1", (HOST, raw))


CASES = [
    # -- Content-Length / Transfer-Encoding framing (request smuggling) ---------------
    Case("cl-and-te", post(b"Content-Length: 5", CHUNKED, body=b"0\r\n\r\n"), 400),
    Case("te-and-cl", post(CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n"), 400),
    Case("cl-duplicate-same", post(b"Content-Length: 1", b"Content-Length: 1", body=b"x"), 400),
    Case("cl-duplicate-different", post(b"Content-Length: 1", b"Content-Length: 2"), 400),
    Case("cl-list-same", post(b"Content-Length: 1, 1", body=b"x"), 400),
    Case("cl-list-different", post(b"Content-Length: 1,2", body=b"xx"), 400),
    Case("cl-plus-sign", post(b"Content-Length: +1", body=b"x"), 400),
    Case("cl-minus-sign", post(b"Content-Length: -1", body=b"x"), 400),
    Case("cl-inner-space", post(b"Content-Length: 1 0", body=b"x"), 400),
    Case("cl-hex", post(b"Content-Length: 0x1", body=b"x"), 400),
    Case("cl-decimal-point", post(b"Content-Length: 1.0", body=b"x"), 400),
    Case("cl-empty", post(b"Content-Length:", body=b"x"), 400),
    Case("cl-non-ascii-digit", post("Content-Length: \u0661".encode(), body=b"x"), 400),
    Case("cl-beyond-64-bits", post(b"Content-Length: 99999999999999999999999"), 413, ("cl-huge",)),
    Case("te-gzip", post(b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), 400),
    Case("te-identity", post(b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    Case("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), 400),
    # chunked is final here, but bext implements no other coding (RFC 9112 §6.1 would also
    # allow 501; bext's rule is 400 for every Transfer-Encoding other than chunked).
    Case("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 400),
    Case("te-chunked-twice", post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    Case("te-two-fields", post(CHUNKED, CHUNKED, body=b"0\r\n\r\n"), 400),
    Case("te-empty", post(b"Transfer-Encoding:"), 400),
    Case("te-in-http10", req(b"POST / HTTP/1.0", (CHUNKED,), b"0\r\n\r\n"), 400),
    Case("te-in-http10-with-host", req(b"POST / HTTP/1.0", (HOST, CHUNKED), b"0\r\n\r\n"), 400),
    # -- line endings and folding -------------------------------------------------------
    Case("obs-fold-sp", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    Case("obs-fold-htab", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400),
    Case("obs-fold-first-line", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    Case("bare-lf-request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    Case("bare-lf-header", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    Case("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    Case("bare-lf-only", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    Case("bare-cr-header", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400),
    Case("bare-cr-request-line", b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    Case("leading-bare-lf", b"\n" + line(b"GET / HTTP/1.1"), 400, ("stray-cr-lf-before-request",)),
    Case(
        "leading-crlf-lf", b"\r\n\n" + line(b"GET / HTTP/1.1"), 400, ("stray-cr-lf-before-request",)
    ),
    Case("leading-bare-cr", b"\r" + line(b"GET / HTTP/1.1"), 400, ("stray-cr-lf-before-request",)),
    Case(
        "leading-cr-crlf", b"\r\r\n" + line(b"GET / HTTP/1.1"), 400, ("stray-cr-lf-before-request",)
    ),
    # -- field values and names ---------------------------------------------------------
    Case("nul-in-value", field(b"X: a\x00b"), 400),
    Case("cr-in-value", field(b"X: a\rb"), 400),
    Case("del-in-value", field(b"X: a\x7fb"), 400),
    Case("soh-in-value", field(b"X: a\x01b"), 400),
    Case("us-in-value", field(b"X: a\x1fb"), 400),
    Case("vt-in-value", field(b"X: \x0bv"), 400),
    Case("ctl-in-name", field(b"X\x01Y: a"), 400),
    Case("nul-name-start", field(b"\x00X: a"), 400),
    Case("space-in-name", field(b"X Y: a"), 400),
    Case("space-before-colon", field(b"X : a"), 400),
    Case("htab-before-colon", field(b"X\t: a"), 400),
    Case("space-before-colon-host", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    Case("space-before-colon-cl", post(b"Content-Length : 1", body=b"x"), 400),
    Case("empty-name", field(b": a"), 400),
    Case("no-colon", field(b"NoColon"), 400),
    Case("separator-in-name", field(b"X(: 1"), 400),
    Case("non-ascii-name", field(b"X\xe9: 1"), 400),
    # -- Host ----------------------------------------------------------------------------
    Case("missing-host-http11", req(headers=()), 400),
    Case("two-hosts-http11", req(headers=(HOST, HOST)), 400),
    Case("two-hosts-different", req(headers=(b"Host: a", b"Host: b")), 400),
    Case("two-hosts-http10", req(b"GET / HTTP/1.0", (HOST, HOST)), 400),
    Case("host-with-space", req(headers=(b"Host: a b",)), 400, ()),
    Case("host-with-slash", req(headers=(b"Host: a/b",)), 400, ()),
    # -- HTTP version ------------------------------------------------------------------
    Case("http-2.0", line(b"GET / HTTP/2.0"), 505),
    Case("http-0.9", line(b"GET / HTTP/0.9"), 505),
    Case("http-1.2", line(b"GET / HTTP/1.2"), 505, ("version-minor",)),
    Case("http-3.0", line(b"GET / HTTP/3.0"), 505, ("version-minor",)),
    Case("http-lowercase", line(b"GET / http/1.1"), 400),
    Case("http-1.10", line(b"GET / HTTP/1.10"), 400),
    Case("http-no-minor", line(b"GET / HTTP/1"), 400),
    Case("http-no-number", line(b"GET / HTTP/"), 400),
    Case("no-version", b"GET /\r\n\r\n", 400, ("http09-simple-request",)),
    Case("target-glued-to-version", line(b"GET /a/bHTTP/1.1"), 400, ("http09-simple-request",)),
    Case(
        "version-before-repeated-host",
        req(b"GET / HTTP/2.0", (HOST, HOST)),
        505,
        ("precedence-h11-fields-first",),
    ),
    Case("version-before-unknown-method", line(b"FOO / HTTP/2.0"), 505),
    # -- method ------------------------------------------------------------------------
    Case("method-at-sign", line(b"G@T / HTTP/1.1"), 400),
    Case("method-quote", line(b'GE"T / HTTP/1.1'), 400),
    Case("method-nul", line(b"\x00GET / HTTP/1.1"), 400),
    Case("method-tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    # Unknown token methods (FOO) are forwarded like any other since issue 14 (RFC 9110
    # §9.1; nginx does too): see tests/protocol/test_h1_hardening.py. Lower case is still
    # refused (as nginx).
    Case("method-lowercase", line(b"get / HTTP/1.1"), 400),
    Case("method-connect", line(b"CONNECT example.com:443 HTTP/1.1"), 405),
    Case("method-connect-origin-form", line(b"CONNECT / HTTP/1.1"), 405),
    # -- request line ------------------------------------------------------------------
    Case("two-spaces-after-method", line(b"GET  / HTTP/1.1"), 400, ("request-line-spaces",)),
    Case("two-spaces-after-target", line(b"GET /  HTTP/1.1"), 400, ("request-line-spaces",)),
    Case("trailing-space", line(b"GET / HTTP/1.1 "), 400),
    Case("leading-space", line(b" GET / HTTP/1.1"), 400),
    Case("htab-separator", line(b"GET\t/ HTTP/1.1"), 400),
    Case("space-in-target", line(b"GET /a b HTTP/1.1"), 400),
    Case("htab-in-target", line(b"GET /a\tb HTTP/1.1"), 400),
    Case("ctl-in-target", line(b"GET /a\x01b HTTP/1.1"), 400),
    Case("nul-in-target", line(b"GET /\x00 HTTP/1.1"), 400),
    Case("del-in-target", line(b"GET /a\x7fb HTTP/1.1"), 400),
    Case("non-ascii-in-target", line(b"GET /caf\xe9 HTTP/1.1"), 400),
    Case("missing-target", line(b"GET HTTP/1.1"), 400),
    Case("empty-target", line(b"GET  HTTP/1.1"), 400),
    Case("relative-target", line(b"GET index.html HTTP/1.1"), 400),
    Case("authority-form-for-get", line(b"GET example.com:80 HTTP/1.1"), 400),
    Case("absolute-form-no-colon", line(b"GET http//x/p HTTP/1.1"), 400, ()),
    Case("absolute-form-not-a-uri", line(b"GET httpfoo HTTP/1.1"), 400, ()),
    Case(
        "absolute-form-no-authority",
        line(b"GET http:x HTTP/1.1"),
        400,
        (),
    ),
    Case(
        "absolute-form-empty-host",
        line(b"GET http:// HTTP/1.1"),
        400,
        (),
    ),
    Case("other-scheme", line(b"GET ftp://x/ HTTP/1.1"), 400),
    # -- chunked framing ---------------------------------------------------------------
    Case("chunk-size-non-hex", chunked(b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    Case(
        "chunk-size-overflow",
        chunked(b"1" + b"0" * 16 + b"\r\nabc\r\n0\r\n\r\n"),
        400,
        ("chunk-size-overflow",),
    ),
    Case("chunk-size-negative", chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk-size-0x", chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk-size-empty", chunked(b"\r\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk-size-leading-space", chunked(b" 3\r\nabc\r\n0\r\n\r\n"), 400),
    Case(
        "chunk-size-trailing-space",
        chunked(b"3 \r\nabc\r\n0\r\n\r\n"),
        400,
        ("chunk-size-trailing-ws",),
    ),
    Case(
        "chunk-size-trailing-htab",
        chunked(b"3\t\r\nabc\r\n0\r\n\r\n"),
        400,
        ("chunk-size-trailing-ws",),
    ),
    Case("chunk-size-bare-lf", chunked(b"3\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk-data-no-crlf", chunked(b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    Case("chunk-data-bare-lf", chunked(b"3\r\nabc\n0\r\n\r\n"), 400),
    Case("chunk-data-too-long", chunked(b"3\r\nabcd\r\n0\r\n\r\n"), 400),
    Case("chunk-ext-ctl", chunked(b"3;\x01\r\nabc\r\n0\r\n\r\n"), 400, ("chunk-ext-unchecked",)),
    Case("chunk-ext-bare-lf", chunked(b"3;a\nabc\r\n0\r\n\r\n"), 400),
    Case(
        "chunk-ext-bare-cr", chunked(b"3;a\rb\r\nabc\r\n0\r\n\r\n"), 400, ("chunk-ext-unchecked",)
    ),
    Case("chunk-ext-nul", chunked(b"3;a\x00\r\nabc\r\n0\r\n\r\n"), 400, ("chunk-ext-unchecked",)),
    Case(
        "chunk-ext-slash-in-name",
        chunked(b"3;a/b\r\nabc\r\n0\r\n\r\n"),
        400,
        ("chunk-ext-unchecked",),
    ),
    Case(
        "chunk-ext-space-in-value",
        chunked(b"3;a=b c\r\nabc\r\n0\r\n\r\n"),
        400,
        ("chunk-ext-unchecked",),
    ),
    Case("last-chunk-bare-lf", chunked(b"0\n\r\n"), 400),
    # -- trailers ----------------------------------------------------------------------
    Case("trailer-space-in-name", chunked(b"0\r\nX Y: 1\r\n\r\n"), 400),
    Case("trailer-nul", chunked(b"0\r\nX: a\x00b\r\n\r\n"), 400),
    Case("trailer-ctl", chunked(b"0\r\nX: a\x01b\r\n\r\n"), 400, ("trailer-unchecked",)),
    Case("trailer-del", chunked(b"0\r\nX: a\x7fb\r\n\r\n"), 400, ("trailer-unchecked",)),
    Case("trailer-bare-lf", chunked(b"0\r\nX: 1\n\r\n"), 400, ("trailer-unchecked",)),
    Case("trailer-obs-fold", chunked(b"0\r\nX: a\r\n b\r\n\r\n"), 400, ("trailer-unchecked",)),
    Case(
        "trailer-content-length",
        chunked(b"0\r\nContent-Length: 5\r\n\r\n"),
        400,
        ("trailer-framing-field",),
    ),
    Case(
        "trailer-transfer-encoding",
        chunked(b"0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400,
        ("trailer-framing-field",),
    ),
    # -- expectations ------------------------------------------------------------------
    Case("expect-other", field(b"Expect: something-else"), 417),
    Case("expect-list", field(b"Expect: 100-continue, foo"), 417),
    Case("expect-empty", field(b"Expect:"), 417),
    # -- limits (SMALL_LIMITS: uri 64, header section 512, 8 fields, body 256) ----------
    Case("uri-too-long", line(b"GET /" + b"a" * 64 + b" HTTP/1.1"), 414, limits=SMALL_LIMITS),
    Case(
        "absolute-uri-too-long",
        line(b"GET http://a/" + b"a" * 60 + b" HTTP/1.1"),
        414,
        limits=SMALL_LIMITS,
    ),
    Case(
        "too-many-fields",
        req(headers=(HOST, *[b"X-%d: 1" % i for i in range(8)])),
        431,
        limits=SMALL_LIMITS,
    ),
    Case("header-section-too-large", field(b"X: " + b"v" * 600), 431, limits=SMALL_LIMITS),
    Case("header-name-too-large", field(b"X" * 600 + b": v"), 431, limits=SMALL_LIMITS),
    Case(
        "many-fields-too-large",
        req(headers=(HOST, *[b"X-%d: %s" % (i, b"v" * 90) for i in range(7)])),
        431,
        limits=SMALL_LIMITS,
    ),
    Case("cl-over-max-body", post(b"Content-Length: 257"), 413, limits=SMALL_LIMITS),
    Case(
        "chunked-over-max-body",
        chunked(b"100\r\n" + b"x" * 256 + b"\r\n1\r\nx\r\n0\r\n\r\n"),
        413,
        limits=SMALL_LIMITS,
    ),
    Case(
        "trailer-too-many-fields",
        chunked(b"0\r\n" + b"".join(b"T%d: 1\r\n" % i for i in range(9)) + b"\r\n"),
        431,
        ("trailer-unchecked",),
        SMALL_LIMITS,
    ),
]

ALL = {case.id: case for case in CASES}
assert len(ALL) == len(CASES), "duplicate case id"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_at_once(
    request: pytest.FixtureRequest, parser_cls: ParserClass, case: Case
) -> None:
    mark_gap(request, parser_cls, *case.gaps)
    expect_error(parser_cls(case.limits), case.data, case.status)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_bytewise(
    request: pytest.FixtureRequest, parser_cls: ParserClass, case: Case
) -> None:
    """The status does not depend on how the bytes arrive."""
    mark_gap(request, parser_cls, *case.gaps)
    outcome = feed_pieces(parser_cls, bytewise(case.data), case.limits)
    assert outcome.status == case.status


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case_id", ["cl-and-te", "obs-fold-sp", "http-2.0", "chunk-size-non-hex"])
def test_error_is_sticky(parser_cls: ParserClass, case_id: str) -> None:
    """After a ProtocolError the parser keeps raising it; nothing is parsed any more."""
    case = ALL[case_id]
    parser = parser_cls(case.limits)
    first = expect_error(parser, case.data, case.status)
    for more in (b"", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"):
        with pytest.raises(ProtocolError) as again:
            parser.feed(more)
        assert again.value.status == first.status


def test_valid_request_before_the_error_is_delivered(parser_cls: ParserClass) -> None:
    """Messages completed in an earlier feed are not retracted by a later error."""
    parser = parser_cls(DEFAULT_LIMITS)
    events = parser.feed(req())
    assert len(events) == 2
    expect_error(parser, b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400)
