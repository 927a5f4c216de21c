"""Known places where an engine (or shared code) departs from the expected behaviour.

Tests keep the *correct* expectation and mark the affected engine ``xfail(strict=True)``
with the reason below, so the suite stays green while every gap stays visible; fixing an
engine turns its xfail into an XPASS failure, which is the cue to delete the entry here.
"""

from __future__ import annotations

import pytest

from tests.protocol.h1support import ENGINE_NAMES, ParserClass

HT = "httptools"
H11 = "h11"
BOTH = (HT, H11)

GAPS: dict[str, tuple[tuple[str, ...], str]] = {
    # -- field values ------------------------------------------------------------------
    "te-value-rewritten": (
        (H11,),
        "h11 lowercases Transfer-Encoding values, so the value is not as received",
    ),
    # -- Content-Length ----------------------------------------------------------------
    "cl-huge": (
        (H11,),
        "h11 refuses a Content-Length of more than 20 digits as malformed (400); it is a "
        "valid 1*DIGIT value larger than max_body_size, so 413 (RFC 9110 §8.6)",
    ),
    # -- Transfer-Encoding -------------------------------------------------------------
    # -- request line ------------------------------------------------------------------
    "version-minor": (
        (HT,),
        "llhttp refuses HTTP/1.2 and HTTP/3.0 itself (400) before check_head, whose rule is "
        "505 for every version other than 1.0/1.1 (note: RFC 9110 §2.5 would even have "
        "HTTP/1.2 processed as 1.1)",
    ),
    "http09-simple-request": (
        (HT,),
        "llhttp reads a request line without HTTP-version as HTTP/0.9 (505); it is not "
        "HTTP/1.1 request-line syntax, so 400 (RFC 9112 §3)",
    ),
    "request-line-spaces": (
        (HT,),
        "llhttp accepts several SP between request-line elements; RFC 9112 §3 requires "
        "exactly one and warns that lenient parsing enables request smuggling",
    ),
    "stray-cr-lf-before-request": (
        (HT,),
        "llhttp skips a bare LF or bare CR before a request line (also between pipelined "
        "requests); bext refuses bare LF / CR everywhere else and h11 refuses them here "
        "(RFC 9112 §2.2 only asks to ignore empty CRLF lines)",
    ),
    # With several faults in one request, check_head's order (version, method, target,
    # field count, then fields) decides the status; each engine has its own order first.
    "precedence-h11-fields-first": (
        (H11,),
        "h11 refuses a repeated Host / framing field before check_head's version check "
        "runs: 'GET / HTTP/2.0' with two Host fields is 400, not 505",
    ),
    # -- chunked framing ---------------------------------------------------------------
    "chunk-size-overflow": (
        (H11,),
        "h11 accepts a chunk-size beyond 64 bits and reads everything after it as data "
        "(RFC 9112 §7.1: recipients must guard against integer overflow)",
    ),
    "chunk-size-trailing-ws": (
        (H11,),
        "h11 accepts whitespace between chunk-size and CRLF ('3 \\r\\n'), a known "
        "request-smuggling discrepancy; RFC 9112 §7.1 grammar has none there",
    ),
    "chunk-ext-unchecked": (
        (H11,),
        "h11 does not validate chunk extensions at all: CR, NUL, obs-text, '/' or ',' in a "
        "chunk-ext are accepted (a bare CR there is a smuggling vector); llhttp refuses them",
    ),
    # -- trailers ----------------------------------------------------------------------
    "trailer-unchecked": (
        (H11,),
        "H11Parser applies bext's bare-LF / obs-fold / control-byte / max_headers checks "
        "to the header section only; h11 lets them through in trailers (and even unfolds "
        "obs-fold)",
    ),
    "trailer-framing-field": (
        (H11,),
        "h11 passes Content-Length / Transfer-Encoding through in trailers; llhttp refuses "
        "framing fields there (RFC 9110 §6.5.1: framing cannot be processed as trailer)",
    ),
}


def mark_gap(request: pytest.FixtureRequest, cls: ParserClass, *gap_ids: str) -> None:
    """Mark the running test xfail(strict=True) if ``cls`` has one of the given gaps."""
    engine = ENGINE_NAMES[cls]
    reasons = [f"[{g}] {GAPS[g][1]}" for g in gap_ids if engine in GAPS[g][0]]
    if reasons:
        request.applymarker(pytest.mark.xfail(strict=True, reason="; ".join(reasons)))
