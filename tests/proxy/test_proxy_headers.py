"""What passes between client and upstream: the response side's hop-by-hop rules."""

from __future__ import annotations

from bext.http.body import EMPTY_BODY
from bext.http.message import Request
from bext.proxy.headers import TrustedProxies, client_response_headers, upstream_request_head


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
    head = upstream_request_head(
        _request(
            [
                (b"host", b"example.com"),
                (b"x-session-hint", b"1"),  # before the Connection field that names it
                (b"connection", b"keep-alive, X-Session-Hint"),
                (b"keep-alive", b"300"),
                (b"x_forwarded_proto", b"https"),  # underscores: dropped by default
                (b"accept", b"*/*"),
            ]
        ),
        b"/",
        TrustedProxies([]),
        None,
        False,
    )
    assert head == (
        b"GET / HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n"
        b"x-forwarded-for: 127.0.0.1\r\nx-real-ip: 127.0.0.1\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: example.com\r\n\r\n"
    )


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
