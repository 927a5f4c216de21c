"""Request ids and W3C Trace Context for proxied requests.

**Request id.** ``X-Request-ID`` from the client is kept only when the client is a
trusted proxy (``server.trusted_proxies``: a load balancer in front that made one) and
the value is short and printable; otherwise bext makes one (16 hex digits). It goes
upstream, back to the client on the response, into the access log, on bext's error pages
and in the WAF's audit log, so one id follows a request through every log.

**Trace context** (W3C Trace Context Level 1). bext is a hop with its own span: a valid
incoming ``traceparent`` keeps its trace id and sampled flag, and the upstream gets a new
parent id (bext's span); without one (or with an invalid one) a new trace starts,
sampled. ``tracestate`` is passed on with a valid ``traceparent`` only. No span is
exported here.

This runs for every proxied request. The proxy's head builder already walks the request's
fields (and drops the client's ``x-request-id``, ``traceparent`` and ``tracestate``), so
it hands over what it saw: no second scan. Ids come from :mod:`random` (Mersenne
Twister, reseeded in every forked worker by CPython), not from the kernel: they must be
unique, not secret, and a ``getrandom`` system call per id would cost more than the rest
of this module.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the request and the proxy's head builder import this module
    from bext.http.message import Request
    from bext.proxy.headers import TrustedProxies

__all__ = ["identity_lines", "new_request_id", "request_id"]

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = b"0" * 16
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_bits = random.getrandbits


def new_request_id() -> str:
    """A fresh request id: 16 hex digits."""
    return _bits(64).to_bytes(8, "big").hex()


def request_id(request: Request, trusted: TrustedProxies) -> str:
    """The request's id, noted on ``request.notes`` once made: kept from a trusted proxy,
    else new. For the phases that answer before the proxy (the WAF) and the log."""
    notes = request.notes
    known = notes.request_id
    if known is None:
        given = request.header(b"x-request-id") if trusted._networks else None
        known = notes.request_id = _kept_id(request, trusted, given) or new_request_id()
    return known


def _kept_id(request: Request, trusted: TrustedProxies, given: bytes | None) -> str | None:
    if given is not None and _CLIENT_ID.fullmatch(given) and trusted.trusts(request.client_addr):
        return given.decode("ascii")
    return None


def identity_lines(
    request: Request,
    trusted: TrustedProxies,
    given_id: bytes | None,
    traceparent: bytes | None,
    tracestate: bytes | None,
) -> bytes:
    """The ``x-request-id``, ``traceparent`` (and ``tracestate``) lines to send upstream,
    given the client's fields of those names (None: absent): the client's trace continued
    with a new span of bext's, or a new trace. Notes the request id and the trace id for
    the response and the log."""
    # One draw for everything this request may need: a request id, a span id, a trace id.
    fresh = _bits(256).to_bytes(32, "big").hex()
    notes = request.notes
    rid = notes.request_id
    if rid is None:
        kept = _kept_id(request, trusted, given_id) if trusted._networks else None
        rid = notes.request_id = kept or fresh[:16]
    span = notes.span_id = fresh[16:32]
    match = _TRACEPARENT.fullmatch(traceparent.strip().lower()) if traceparent else None
    if match is not None and match.group(2) != _ZERO_SPAN:
        trace = match.group(1).decode("ascii")
        if trace != _ZERO_TRACE:
            notes.trace_id = trace
            notes.parent_span_id = match.group(2).decode("ascii")
            flags = match.group(3).decode("ascii")
            notes.sampled = int(flags, 16) & 1 == 1
            lines = (f"x-request-id: {rid}\r\ntraceparent: 00-{trace}-{span}-{flags}\r\n").encode(
                "ascii"
            )
            return lines if tracestate is None else lines + b"tracestate: " + tracestate + b"\r\n"
    trace = notes.trace_id = fresh[32:]
    return f"x-request-id: {rid}\r\ntraceparent: 00-{trace}-{span}-01\r\n".encode("ascii")
