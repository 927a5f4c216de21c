"""The sans-IO parts alone: limits bookkeeping, the credit policy, request heads, SNI peek."""

from __future__ import annotations

import pytest
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.tls import ClientHello, push_client_hello

from bext.protocol.events import ParserLimits, ProtocolError
from bext.protocol.h3_limits import Admission, H3Limits, ResetGuard, stream_credit
from bext.protocol.quic_session import peek_server_name
from bext.protocol.request_fields import parse_request_head


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        H3Limits(max_datagram_size=1000)
    with pytest.raises(ValueError):
        H3Limits(max_streams=0)
    assert H3Limits().retry


def test_admission() -> None:
    admission = Admission(max_connections=2, max_handshakes=1)
    assert admission.refusal() is None
    admission.opened()
    assert admission.refusal() == "too many handshakes in progress"
    admission.handshake_done()
    admission.opened()
    admission.handshake_done()
    assert admission.refusal() == "too many QUIC connections"
    admission.closed(handshaking=False)
    assert admission.refusal() is None
    assert admission.refusal(other_connections=10, other_limit=10) == "too many connections"
    admission.opened()
    admission.closed(handshaking=True)
    assert (admission.connections, admission.handshakes) == (1, 0)


def test_reset_guard_allows_bursts_not_floods() -> None:
    guard = ResetGuard(burst=5, rate=2.0, now=0.0)
    assert all(guard.cancelled(0.0) for _ in range(5))
    assert not guard.cancelled(0.0)
    guard = ResetGuard(burst=5, rate=2.0, now=0.0)
    # two per second forever is fine
    assert all(guard.cancelled(t * 0.5) for t in range(100))
    # four per second runs dry after the burst is spent
    guard = ResetGuard(burst=5, rate=2.0, now=0.0)
    results = [guard.cancelled(t * 0.25) for t in range(40)]
    assert not all(results) and results[:5] == [True] * 5


def test_stream_credit() -> None:
    window = 1000
    assert stream_credit(1000, 100, window, True) == 1000  # less than a quarter gained
    assert stream_credit(1000, 300, window, True) == 1300
    assert stream_credit(1000, 900, window, False) == 1000  # paused: nothing more
    assert stream_credit(5000, 100, window, True) == 5000  # never taken back


def _head(*extra: tuple[bytes, bytes], **pseudo: bytes) -> list[tuple[bytes, bytes]]:
    fields = {b":method": b"GET", b":scheme": b"https", b":authority": b"example.test",
              b":path": b"/p?q=1"}  # fmt: skip
    for name, value in pseudo.items():
        fields[b":" + name.encode()] = value
    return [*fields.items(), *extra]


def test_parse_request_head() -> None:
    head = parse_request_head(
        _head((b"cookie", b"a=1"), (b"x-y", b"z"), (b"cookie", b"b=2"), (b"content-length", b"7")),
        ParserLimits(),
    )
    assert (head.method, head.target, head.host) == ("GET", b"/p?q=1", "example.test")
    assert head.headers == [
        (b"host", b"example.test"),
        (b"cookie", b"a=1; b=2"),
        (b"x-y", b"z"),
        (b"content-length", b"7"),
    ]
    assert head.content_length == 7 and not head.expect_continue
    same_host = parse_request_head(_head((b"host", b"example.test")), ParserLimits())
    assert same_host.headers == [(b"host", b"example.test")]
    options = parse_request_head(_head(method=b"OPTIONS", path=b"*"), ParserLimits())
    assert options.target == b"*"
    expect = parse_request_head(_head((b"expect", b"100-Continue")), ParserLimits())
    assert expect.expect_continue


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (_head(method=b"G E T"), 400),
        (_head(method=b"CONNECT"), 405),
        (_head(scheme=b"http"), 400),
        (_head(path=b"p"), 400),
        (_head(path=b"*"), 400),
        (_head(authority=b"a b"), 400),
        (_head(authority=b""), 400),
        (_head((b"host", b"other")), 400),
        (_head((b"host", b"example.test"), (b"host", b"other")), 400),
        (_head((b"content-length", b"1"), (b"content-length", b"2")), 400),
        (_head((b"expect", b"nothing")), 417),
        ([*_head(), (b":protocol", b"websocket")], 400),
        (_head(path=b"/" + b"x" * 100), 414),
        (_head(*[(b"x", b"y")] * 11), 431),
        (_head((b"x", b"y" * 300)), 431),
    ],
)
def test_parse_request_head_refuses(fields: list[tuple[bytes, bytes]], status: int) -> None:
    limits = ParserLimits(max_uri_length=64, max_headers=10, max_header_size=256)
    with pytest.raises(ProtocolError) as info:
        parse_request_head(fields, limits)
    assert info.value.status == status


def test_peek_server_name() -> None:
    hello = ClientHello(
        random=b"\x00" * 32,
        legacy_session_id=b"",
        cipher_suites=[0x1301],
        legacy_compression_methods=[0],
        server_name="shop.test",
        key_share=[],
        signature_algorithms=[],
        supported_groups=[],
        supported_versions=[0x0304],
    )
    buf = Buffer(capacity=4096)
    push_client_hello(buf, hello)
    data = buf.data
    assert peek_server_name(data[:3]) == (False, None)
    assert peek_server_name(data[: len(data) - 1]) == (False, None)
    assert peek_server_name(data) == (True, "shop.test")
    assert peek_server_name(b"\x02\x00\x00\x01x") == (True, None)  # not a ClientHello
    assert peek_server_name(b"\x01\x00\x00\x02xx") == (True, None)  # unparseable
