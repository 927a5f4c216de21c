"""What passes between client and upstream: the response side's hop-by-hop rules."""

from __future__ import annotations

import re

import pytest

from bext.http.body import EMPTY_BODY
from bext.http.message import Request
from bext.proxy.headers import (
    HOP_BY_HOP,
    TrustedProxies,
    client_response_headers,
    connection_names,
    upstream_request_head,
)


def test_fields_named_by_connection_are_dropped_whatever_their_case() -> None:
    # Upstream field names arrive as sent ("Connection", not "connection"): the fields
    # that Connection names are hop-by-hop (RFC 9110 §7.6.1) and never reach the client,
    # even when Connection comes after them.
    headers = [
        (b"X-Secret", b"1"),
        (b"Content-Type", b"text/html"),
        (b"Connection", b"close, x-secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Kept", b"yes"),
    ]
    out, no_buffering = client_response_headers(headers)
    assert out == [(b"Content-Type", b"text/html"), (b"X-Kept", b"yes")]
    assert not no_buffering


def test_edge_controls_are_read_and_dropped() -> None:
    out, no_buffering = client_response_headers(
        [(b"X-Accel-Buffering", b" No "), (b"Date", b"x"), (b"Server", b"y"), (b"ETag", b'"1"')]
    )
    assert out == [(b"ETag", b'"1"')]
    assert no_buffering
    _, streaming = client_response_headers([(b"Content-Type", b"text/event-stream; x=1")])
    assert streaming


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request("GET", b"/", headers, "1.1", "http", "127.0.0.1", 5555, 80, EMPTY_BODY, 0.0)


def test_request_fields_named_by_connection_stay_at_the_edge() -> None:
    request = _request(
        [
            (b"host", b"example.com"),
            (b"x-session-hint", b"1"),  # before the Connection field that names it
            (b"connection", b"keep-alive, X-Session-Hint"),
            (b"keep-alive", b"300"),
            (b"x_forwarded_proto", b"https"),  # underscores: dropped by default
            (b"accept", b"*/*"),
        ]
    )
    head = upstream_request_head(request, b"/", TrustedProxies([]), None, False)
    rid, trace = request.notes.request_id, request.notes.trace_id
    assert rid is not None and trace is not None
    identity = head.split(b"x-request-id: ")[1]
    assert head == (
        b"GET / HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n"
        b"x-forwarded-for: 127.0.0.1\r\nx-real-ip: 127.0.0.1\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: example.com\r\nx-request-id: " + identity
    )
    assert identity.startswith(b"%s\r\ntraceparent: 00-%s-" % (rid.encode(), trace.encode()))
    assert re.fullmatch(rb"[0-9a-f]{16}\r\ntraceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-01\r\n\r\n",
                        identity)  # fmt: skip


def _identity(head: bytes) -> dict[bytes, bytes]:
    """The x-request-id, traceparent and tracestate values of an upstream head."""
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    return {name: fields[name] for name in (b"x-request-id", b"traceparent", b"tracestate")
            if name in fields}  # fmt: skip


PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_a_client_trace_is_continued_with_a_new_span() -> None:
    request = _request([(b"host", b"h"), (b"traceparent", PARENT), (b"tracestate", b"a=1"),
                        (b"tracestate", b"b=2"), (b"x-request-id", b"client-chosen")])  # fmt: skip
    sent = _identity(upstream_request_head(request, b"/", TrustedProxies([]), None, False))
    version, trace, span, flags = sent[b"traceparent"].split(b"-")
    assert (version, trace, flags) == (b"00", b"0af7651916cd43dd8448eb211c80319c", b"00")
    assert span != b"b7ad6b7169203331" and re.fullmatch(rb"[0-9a-f]{16}", span)
    assert sent[b"tracestate"] == b"a=1,b=2"  # two fields are one list
    assert sent[b"x-request-id"] != b"client-chosen"  # the client is not a trusted proxy
    assert request.notes.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_a_trusted_proxy_keeps_its_request_id_and_a_bad_trace_starts_anew() -> None:
    request = _request([(b"host", b"h"), (b"x-request-id", b"lb-42"), (b"traceparent", PARENT),
                        (b"traceparent", PARENT), (b"tracestate", b"dropped=1")])  # fmt: skip
    sent = _identity(upstream_request_head(request, b"/", TrustedProxies(["127.0.0.0/8"]), None,
                                           False))  # fmt: skip
    assert sent[b"x-request-id"] == b"lb-42" and request.notes.request_id == "lb-42"
    # Two traceparent fields are invalid: a new, sampled trace, without the tracestate.
    assert b"0af7651916cd43dd8448eb211c80319c" not in sent[b"traceparent"]
    assert sent[b"traceparent"].endswith(b"-01") and b"tracestate" not in sent
    for zero in (b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01", b"00-" + b"1" * 32 + b"-" + b"0" * 16
                 + b"-01", b"01-" + b"1" * 32 + b"-b7ad6b7169203331-01"):  # fmt: skip
        request = _request([(b"host", b"h"), (b"traceparent", zero)])
        sent = _identity(upstream_request_head(request, b"/", TrustedProxies([]), None, False))
        assert sent[b"traceparent"].split(b"-")[1] not in zero


def test_forwarded_chain_only_from_a_trusted_peer() -> None:
    request = _request([(b"host", b"h"), (b"x-forwarded-for", b"203.0.113.9")])
    trusted = TrustedProxies(["127.0.0.0/8"])
    head = upstream_request_head(request, b"/", trusted, 0, False)
    assert b"x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n" in head
    assert b"x-real-ip: 203.0.113.9\r\n" in head
    assert head.endswith(b"content-length: 0\r\n\r\n")
    untrusted = upstream_request_head(request, b"/", TrustedProxies([]), None, False)
    assert b"x-forwarded-for: 127.0.0.1\r\n" in untrusted
    assert b"203.0.113.9" not in untrusted


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"keep-alive", set()),  # the usual value: names a hop-by-hop field only
        (b"Keep-Alive", set()),
        (b"close", {b"close"}),
        (b"Upgrade", set()),
        (b"keep-alive, X-Foo", {b"x-foo"}),
        (b" x-a ,X-B,keep-alive", {b"x-a", b"x-b"}),
    ],
)
def test_connection_names_what_it_names_beyond_the_dropped_fields(
    value: bytes, named: set[bytes]
) -> None:
    assert set(connection_names(value, HOP_BY_HOP)) == named
    headers = [(b"Connection", value), (b"X-Foo", b"1"), (b"X-A", b"2"), (b"ETag", b'"1"')]
    out, _ = client_response_headers(headers)
    assert out == [(n, v) for n, v in headers[1:] if n.lower() not in named]
