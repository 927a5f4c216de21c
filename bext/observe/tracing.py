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

This runs for every proxied request, so it is one function making the header lines at
once. Ids come from :mod:`random` (Mersenne Twister, reseeded in every forked worker by
CPython), not from the kernel: they must be unique, not secret, and a ``getrandom``
system call per id would cost more than the rest of this module.
"""

from __future__ import annotations

import random
import re

from bext.http.message import Request
from bext.proxy.headers import TrustedProxies

__all__ = ["identity_lines", "request_id"]

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_bits = random.getrandbits


def request_id(request: Request, trusted: TrustedProxies) -> str:
    """The request's id (noted on ``request.notes``): kept from a trusted proxy, else new."""
    notes = request.notes
    known = notes.request_id
    if known is not None:
        return known
    given = request.header(b"x-request-id") if trusted._networks else None
    if given is not None and _CLIENT_ID.fullmatch(given) and trusted.trusts(request.client_addr):
        known = given.decode("ascii")
    else:
        known = f"{_bits(64):016x}"
    notes.request_id = known
    return known


def identity_lines(request: Request, trusted: TrustedProxies) -> bytes:
    """The ``x-request-id``, ``traceparent`` (and ``tracestate``) lines to send upstream:
    the client's trace continued with a new span of bext's, or a new trace. Notes the
    request id and the trace id for the response and the log."""
    # One draw for everything this request may need: a request id, a span id, a trace id.
    fresh = b"%064x" % _bits(256)
    notes = request.notes
    rid = notes.request_id
    if rid is None:
        given = request.header(b"x-request-id") if trusted._networks else None
        if (
            given is not None
            and _CLIENT_ID.fullmatch(given)
            and trusted.trusts(request.client_addr)
        ):
            rid = given.decode("ascii")
        else:
            rid = fresh[:16].decode("ascii")
        notes.request_id = rid
    incoming = request.header(b"traceparent")
    match = _TRACEPARENT.fullmatch(incoming.strip().lower()) if incoming is not None else None
    if match is not None and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
        trace, flags = match.group(1), match.group(3)
        state = request.header(b"tracestate")
    else:
        trace, flags, state = fresh[32:], b"01", None
    notes.trace_id = trace.decode("ascii")
    lines = b"x-request-id: %s\r\ntraceparent: 00-%s-%s-%s\r\n" % (
        rid.encode("ascii"),
        trace,
        fresh[16:32],
        flags,
    )
    if state is not None:
        lines += b"tracestate: " + state + b"\r\n"
    return lines
