"""Request ids and W3C Trace Context for proxied requests.

**Request id.** ``X-Request-ID`` from the client is kept only when the client is a
trusted proxy (``server.trusted_proxies``: a load balancer in front that made one) and
the value is short and printable; otherwise bext makes one (16 hex digits). It goes
upstream, back to the client on the response, into the access log, on bext's error pages
and in the WAF's audit log, so one id follows a request through every log.

**Trace context** (W3C Trace Context Level 1). bext is a hop with its own span: a valid
incoming ``traceparent`` keeps its trace id and sampled flag, and the upstream gets a new
parent id (bext's span); without one (or with an invalid one) a new trace starts,
sampled. ``tracestate`` is passed on with a valid ``traceparent`` only. Parsing and
formatting cost a few microseconds; no span is exported here.
"""

from __future__ import annotations

import os
import re

from bext.http.message import Request
from bext.proxy.headers import TrustedProxies

__all__ = ["TraceContext", "request_id", "trace_context"]

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")


def request_id(request: Request, trusted: TrustedProxies) -> str:
    """The request's id (noted on ``request.notes``): kept from a trusted proxy, else new."""
    notes = request.notes
    known = notes.request_id
    if known is not None:
        return known
    given = request.header(b"x-request-id")
    if (
        given is not None
        and _CLIENT_ID.fullmatch(given)
        and trusted
        and trusted.trusts(request.client_addr)
    ):
        known = given.decode("ascii")
    else:
        known = os.urandom(8).hex()
    notes.request_id = known
    return known


class TraceContext:
    """The ``traceparent`` (and ``tracestate``) to send upstream for one request."""

    __slots__ = ("parent_id", "trace_id", "traceparent", "tracestate")

    def __init__(self, trace_id: bytes, parent_id: bytes, flags: bytes, state: bytes | None):
        self.trace_id = trace_id.decode("ascii")
        self.parent_id = parent_id.decode("ascii")
        """bext's own span id: the upstream's parent."""
        self.traceparent = b"00-" + trace_id + b"-" + parent_id + b"-" + flags
        self.tracestate = state


def trace_context(request: Request) -> TraceContext:
    """Continue the client's trace with a new span, or start one."""
    span = os.urandom(8).hex().encode("ascii")
    incoming = request.header(b"traceparent")
    if incoming is not None:
        match = _TRACEPARENT.fullmatch(incoming.strip().lower())
        if match is not None and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
            state = request.header(b"tracestate")
            context = TraceContext(match.group(1), span, match.group(3), state)
            request.notes.trace_id = context.trace_id
            return context
    context = TraceContext(os.urandom(16).hex().encode("ascii"), span, b"01", None)
    request.notes.trace_id = context.trace_id
    return context
