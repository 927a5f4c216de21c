"""The sans-IO pieces of bext's HTTP/2: the frame guard, request header rules, limits."""

from __future__ import annotations

import random

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
)

from bext.protocol.events import ParserLimits, ProtocolError
from bext.protocol.h2_guard import (
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    PREFACE,
    FrameGuard,
    RateWindow,
    goaway_frame,
)
from bext.protocol.h2_headers import MalformedRequest, check_request, check_trailers
from bext.protocol.h2_limits import H2Limits

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/p"), (b":authority", b"a.test")]


def _wire(frames: list[Frame]) -> bytes:
    return PREFACE + b"".join(f.serialize() for f in frames)


def _feed_split(
    data: bytes, rng: random.Random, limits: H2Limits, block: int
) -> tuple[int, int, str] | None:
    """Feed ``data`` in random pieces; (bytes fed when it tripped, code, reason) or None."""
    guard = FrameGuard(limits, block)
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 2, 3, 8, 9, 10, 17, 100, 5000])
        verdict = guard.feed(data[pos : pos + size], 0.0)
        pos += size
        if verdict is not None:
            return min(pos, len(data)), verdict[0], verdict[1]
    return None


def test_guard_finds_frame_headers_however_the_bytes_are_split() -> None:
    limits = H2Limits(max_pings=5)
    frames: list[Frame] = [SettingsFrame(0), DataFrame(1, b"x" * 300)]
    frames += [PingFrame(0, opaque_data=b"%08d" % i) for i in range(5)]
    frames += [DataFrame(1, b"y" * 1000)]
    data = _wire(frames)
    trip = _wire([*frames, PingFrame(0, opaque_data=b"tripping")])
    rng = random.Random(7)
    for _ in range(200):
        assert _feed_split(data, rng, limits, 1 << 20) is None
        result = _feed_split(trip, rng, limits, 1 << 20)
        assert result is not None
        fed, code, reason = result
        assert code == ENHANCE_YOUR_CALM and reason == "PING flood"
        assert fed > len(data)  # only the sixth PING's header trips it


def test_guard_cuts_a_growing_header_block() -> None:
    frames: list[Frame] = [HeadersFrame(1, b"\x82" * 1000)]
    frames += [ContinuationFrame(1, b"\x82" * 1000) for _ in range(10)]
    rng = random.Random(3)
    for _ in range(100):
        result = _feed_split(_wire(frames), rng, H2Limits(), 4500)
        assert result is not None
        fed, code, reason = result
        assert code == ENHANCE_YOUR_CALM and "header block" in reason
        # The fifth frame's header announces 5000 bytes of block: cut before its payload.
        assert fed <= len(PREFACE) + 4 * 1009 + 9 + 5000
    # A block that ends (END_HEADERS) resets the count.
    ok = [HeadersFrame(1, b"\x82" * 4000, flags=["END_HEADERS"])] * 5
    assert _feed_split(_wire(ok), rng, H2Limits(), 4500) is None


def test_guard_refuses_oversized_frames_from_the_header() -> None:
    guard = FrameGuard(H2Limits(), 1 << 20)
    header = (16385).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    assert guard.feed(PREFACE + header, 0.0) == (
        FRAME_SIZE_ERROR,
        "frame larger than SETTINGS_MAX_FRAME_SIZE",
    )


def test_guard_settings_window_and_resets() -> None:
    limits = H2Limits(max_settings=2, max_resets=3, rate_window=1.0)
    guard = FrameGuard(limits, 1 << 20)
    settings = SettingsFrame(0).serialize()
    ack = SettingsFrame(0, flags=["ACK"]).serialize()
    assert guard.feed(PREFACE + settings + ack * 10 + settings, 0.0) is None  # ACKs are free
    assert guard.feed(settings, 0.5) is not None
    guard = FrameGuard(limits, 1 << 20)
    assert guard.feed(PREFACE + settings + settings, 0.0) is None
    assert guard.feed(settings, 1.5) is None  # a new window
    assert [guard.stream_reset(t) for t in (0.0, 0.1, 0.2)] == [None, None, None]
    assert guard.stream_reset(0.3) is not None
    assert guard.stream_reset(5.0) is None


def test_guard_other_empty_frames_are_not_counted() -> None:
    limits = H2Limits(max_settings=1, max_empty_frames=2)
    guard = FrameGuard(limits, 1 << 20)
    priority = b"\x00\x00\x00\x02\x00\x00\x00\x00\x01"  # malformed, but h2's business
    end = DataFrame(1, b"", flags=["END_STREAM"]).serialize()
    assert guard.feed(PREFACE + priority * 10 + end * 10, 0.0) is None
    empty = DataFrame(1, b"").serialize()
    assert guard.feed(empty * 2, 0.0) is None
    assert guard.feed(empty, 0.0) == (ENHANCE_YOUR_CALM, "empty DATA frame flood")


def test_rate_window() -> None:
    window = RateWindow(3, 10.0)
    assert [window.hit(t) for t in (0, 1, 2, 3)] == [False, False, False, True]
    assert window.hit(10.5) is False


def test_goaway_frame_encoding() -> None:
    frame, length = Frame.parse_frame_header(memoryview(goaway_frame(2**31 - 1, 0xB)[:9]))
    frame.parse_body(memoryview(goaway_frame(2**31 - 1, 0xB)[9:]))
    assert isinstance(frame, GoAwayFrame) and length == 8
    assert frame.last_stream_id == 2**31 - 1 and frame.error_code == 0xB


def test_check_request_mapping() -> None:
    fields = [
        *BASE,
        (b"cookie", b"a=1"),
        (b"te", b"trailers"),
        (b"content-length", b"5"),
        (b"cookie", b"b=2"),
        (b"expect", b"100-continue"),
    ]
    head = check_request(fields, ParserLimits(), 1 << 16)
    assert (head.method, head.target, head.http_version, head.host) == (
        "GET",
        b"/p",
        "2.0",
        "a.test",
    )
    assert head.headers == [
        (b"host", b"a.test"),
        (b"cookie", b"a=1; b=2"),
        (b"te", b"trailers"),
        (b"content-length", b"5"),
        (b"expect", b"100-continue"),
    ]
    assert head.content_length == 5 and head.expect_continue
    options = check_request(
        [(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*"), (b"host", b"h")],
        ParserLimits(),
        1 << 16,
    )
    assert options.target == b"*" and options.headers == [(b"host", b"h")]


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([(b"content-length", b"5"), (b"content-length", b"6")], 400),
        ([(b"content-length", b"-1")], 400),
        ([(b"content-length", b"200")], 413),
        ([(b"bad name", b"v")], 400),
        ([(b"x", b"a\x00b")], 400),
        ([(b"x", b"a\rb")], 400),
        ([(b"x", b"trailing ")], 400),
        ([(b"keep-alive", b"1")], 400),
        ([(b"proxy-connection", b"1")], 400),
        ([(b"host", b"a.test"), (b"host", b"a.test")], 400),
    ],
)
def test_check_request_refusals(extra: list[tuple[bytes, bytes]], status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        check_request([*BASE, *extra], ParserLimits(max_body_size=100), 1 << 16)
    assert info.value.status == status
    assert isinstance(info.value, MalformedRequest) == (status == 400)


def test_header_list_size_is_counted_as_rfc_9113_says() -> None:
    fields = [*BASE, (b"x", b"v" * 100)]
    size = sum(len(n) + len(v) + 32 for n, v in fields)
    check_request(fields, ParserLimits(), size)
    with pytest.raises(ProtocolError) as info:
        check_request(fields, ParserLimits(), size - 1)
    assert info.value.status == 431


def test_check_trailers() -> None:
    assert check_trailers([(b"x-sum", b"1")]) == [(b"x-sum", b"1")]
    for bad in ([(b":status", b"200")], [(b"X-Upper", b"1")], [(b"x", b"\n")]):
        with pytest.raises(MalformedRequest):
            check_trailers(bad)
