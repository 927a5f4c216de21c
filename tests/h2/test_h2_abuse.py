"""HTTP/2 abuse: every limit bext enforces against resource exhaustion, exercised for real.

Each test plays the attacker with :class:`RawH2` over a real socket and checks both the
verdict (GOAWAY / RST_STREAM and its error code) and that the server stays healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
import threading
import time

import httpx
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from bext.http.message import Request, Response
from bext.protocol.h2_limits import H2Limits
from tests.h2.h2client import (
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RawH2,
)
from tests.h2.support import RecordingCounters
from tests.support.inproc import Harness, serve, serve_harness


def ok(request: Request) -> Response:
    return Response(200, [], b"ok")


def assert_healthy(port: int) -> None:
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{port}/health").status_code == 200


def wait_no_connections(server: Harness, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.call(lambda: len(server.ctx.connections)):
        assert time.monotonic() < deadline, "connection still open"
        time.sleep(0.02)


class Tracker:
    """An async handler that never finishes on its own and records its cancellation."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0

    async def __call__(self, request: Request) -> Response:
        if request.target == b"/health":
            return Response(200, [], b"ok")
        self.started += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Response(200, [], b"late")


def test_rapid_reset_burst_gets_goaway_and_no_handler_keeps_running() -> None:
    tracker = Tracker()
    with serve_harness(tracker) as server, RawH2(server.port) as conn:
        burst = []
        for i in range(1000):
            sid = 2 * i + 1
            burst.append(
                conn.headers_frame(
                    sid,
                    [
                        (b":method", b"GET"),
                        (b":scheme", b"http"),
                        (b":path", b"/"),
                        (b":authority", b"x"),
                    ],
                )
            )
            burst.append(RstStreamFrame(sid, error_code=0x8))
        conn.send(*burst)
        goaway = conn.wait_goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        conn.wait_closed()
        wait_no_connections(server)
        # Streams reset in the read that opened them never reach the pipeline; any that did
        # had their handler cancelled.
        assert tracker.started < 1000
        assert server.call(lambda: tracker.cancelled) == tracker.started
        assert_healthy(server.port)


def test_reset_streams_cancel_their_handlers() -> None:
    tracker = Tracker()
    with serve_harness(tracker) as server, RawH2(server.port) as conn:
        for i in range(20):
            conn.request(2 * i + 1)
            deadline = time.monotonic() + 5
            while server.call(lambda: tracker.started) <= i:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            conn.rst(2 * i + 1)
        deadline = time.monotonic() + 5
        while server.call(lambda: tracker.cancelled) < 20:
            assert time.monotonic() < deadline, "reset streams still have running handlers"
            time.sleep(0.01)
        assert tracker.started == 20
        # 20 resets are well within the budget: the connection is fine.
        conn.request(41)
        conn.rst(41)
        assert conn.goaway is None


def _send_in_background(conn: RawH2, data: bytes) -> threading.Thread:
    sent: list[int] = []

    def send() -> None:
        with contextlib.suppress(OSError):  # the server hangs up on it, as it should
            conn.sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.sent = sent  # type: ignore[attr-defined]
    return thread


def test_continuation_flood_is_cut_at_the_header_size_limit() -> None:
    counters = RecordingCounters()
    with serve_harness(ok, counters=counters) as server, RawH2(server.port) as conn:
        block = conn.header_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
        frames = [HeadersFrame(1, block)]  # no END_HEADERS: the block stays open
        frames += [ContinuationFrame(1, b"\x40\x01a\x01b" * 3000) for _ in range(300)]
        payload = b"".join(f.serialize() for f in frames)  # ~4.5 MB of header block
        thread = _send_in_background(conn, payload)
        goaway = conn.wait_goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        wait_no_connections(server)
        thread.join(5)
        # Cut at twice the advertised header list size (the hard HPACK limit), long before
        # h2's own bound of 64 CONTINUATION frames (1 MiB here) and the 4.5 MB sent.
        assert counters.bytes_in < 128 * 1024
        assert_healthy(server.port)


def test_endless_empty_continuation_frames(h2_engine_name: str) -> None:
    with serve(ok) as port, RawH2(port) as conn:
        block = conn.header_block([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
        frames = [HeadersFrame(1, block)] + [ContinuationFrame(1, b"") for _ in range(1000)]
        conn.send(*frames)
        goaway = conn.wait_goaway()
        # Both allow 64 frames per block: h2 calls more a protocol error, nghttp2 a flood.
        expected = ENHANCE_YOUR_CALM if h2_engine_name == "nghttp2" else PROTOCOL_ERROR
        assert goaway.error_code == expected
        assert_healthy(port)


def test_hpack_bomb() -> None:
    """A tiny block that decodes to megabytes: refused before it is all decoded."""
    with serve(ok) as port, RawH2(port) as conn:
        big = b"v" * 4000
        conn.request(1, extra=[(b"x-big", big)])  # enters the dynamic table (index 62)
        assert conn.response(1).status == 200
        # Just over the advertised header list size: a 431 for this stream only. (The same
        # pseudo-header fields as request 1, so the encoder adds nothing to its table.)
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"localhost"),
        ]
        block = conn.header_block(fields) + bytes([0x80 | 62]) * 7
        conn.send(HeadersFrame(3, block, flags=["END_HEADERS", "END_STREAM"]))
        assert conn.response(3).status == 431
        # Far beyond it: 200 references, 800 kB decoded from 200 bytes.
        block = conn.header_block(fields) + bytes([0x80 | 62]) * 200
        conn.send(HeadersFrame(5, block, flags=["END_HEADERS", "END_STREAM"]))
        goaway = conn.wait_goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert_healthy(port)


def test_oversized_header_block_in_one_frame() -> None:
    with serve(ok) as port, RawH2(port) as conn:
        conn.request(1, extra=[(b"x-huge", b"h" * 60000)])
        goaway = conn.wait_goaway()
        # Larger than SETTINGS_MAX_FRAME_SIZE in one HEADERS frame.
        assert goaway.error_code == FRAME_SIZE_ERROR
    with serve(ok) as port, RawH2(port) as conn:
        # Split properly into CONTINUATION frames, and still over the hard limit.
        block = conn.header_block(
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"x"),
                (b"x-huge", os.urandom(30000).hex().encode()),
            ]
        )
        parts = [block[i : i + 16384] for i in range(0, len(block), 16384)]
        frames = [HeadersFrame(1, parts[0], flags=["END_STREAM"])]
        frames += [ContinuationFrame(1, p) for p in parts[1:-1]]
        frames.append(ContinuationFrame(1, parts[-1], flags=["END_HEADERS"]))
        conn.send(*frames)
        assert conn.wait_goaway().error_code == ENHANCE_YOUR_CALM


def test_settings_flood() -> None:
    with serve(ok) as port, RawH2(port) as conn:
        conn.send(*[SettingsFrame(0, settings={0x3: 100}) for _ in range(500)])
        goaway = conn.wait_goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        acks = sum(1 for f in _drain(conn) if isinstance(f, SettingsFrame) and "ACK" in f.flags)
        assert acks <= H2Limits().max_settings + 1
        assert_healthy(port)


def test_ping_flood() -> None:
    with serve(ok) as port, RawH2(port) as conn:
        conn.send(*[PingFrame(0, opaque_data=struct.pack(">Q", i)) for i in range(1000)])
        goaway = conn.wait_goaway()
        assert goaway.error_code == ENHANCE_YOUR_CALM
        assert_healthy(port)


def test_empty_data_frame_flood() -> None:
    async def echo(request: Request) -> Response:
        return Response(200, [], await request.body.read_all(1 << 20))

    with serve(echo) as port, RawH2(port) as conn:
        # A few empty DATA frames are legal and change nothing: the body is not over.
        conn.request(1, b"/", method=b"POST", end_stream=False)
        conn.send(
            *[DataFrame(1, b"") for _ in range(5)], DataFrame(1, b"real", flags=["END_STREAM"])
        )
        assert conn.response(1).body == b"real"
        conn.request(3, b"/", method=b"POST", end_stream=False)
        conn.send(*[DataFrame(3, b"") for _ in range(1000)])
        assert conn.wait_goaway().error_code == ENHANCE_YOUR_CALM
        assert_healthy(port)


def _drain(conn: RawH2) -> list[object]:
    frames: list[object] = []
    while (frame := conn.read_frame(5)) is not None:
        frames.append(frame)
    return frames


def test_client_provoking_acks_without_reading_is_dropped() -> None:
    """Under the rate limits, a client that never reads still cannot grow our buffer."""
    limits = H2Limits(max_pings=10**9, max_output_buffer=256 * 1024)
    with serve_harness(ok, h2=limits) as server:
        conn = RawH2(server.port, rcvbuf=4096)
        ping = PingFrame(0, opaque_data=b"12345678").serialize()
        thread = _send_in_background(conn, ping * 400_000)  # 6.8 MB of ACKs owed
        wait_no_connections(server, timeout=20)
        thread.join(10)
        conn.close()
        assert_healthy(server.port)


def test_concurrent_stream_limit_refuses_streams_not_the_connection() -> None:
    release = asyncio.Event()

    async def waiting(request: Request) -> Response:
        await release.wait()
        return Response(200, [], request.target)

    limits = H2Limits(max_concurrent_streams=8)
    with serve_harness(waiting, h2=limits) as server, RawH2(server.port, auto_ack=False) as conn:
        conn.read_until(lambda: bool(conn.server_settings))
        assert conn.server_settings[0x3] == 8  # SETTINGS_MAX_CONCURRENT_STREAMS
        for i in range(10):
            conn.request(2 * i + 1, b"/%d" % i)
        # Before our SETTINGS are acknowledged the client may not know the limit yet:
        # REFUSED_STREAM, which it can safely retry.
        conn.read_until(
            lambda: conn.reply(17).reset is not None and conn.reply(19).reset is not None
        )
        assert conn.reply(17).reset == REFUSED_STREAM
        server.call(release.set)
        for i in range(8):
            assert conn.response(2 * i + 1).body == b"/%d" % i
        release_again = asyncio.Event()
        server.call(lambda: setattr(release, "wait", release_again.wait))
        conn.ack_settings()
        for i in range(10, 19):
            conn.request(2 * i + 1, b"/%d" % i)
        conn.read_until(lambda: conn.reply(37).reset is not None)
        assert conn.reply(37).reset == PROTOCOL_ERROR  # it knew the limit
        server.call(release_again.set)
        for i in range(10, 18):
            assert conn.response(2 * i + 1).body == b"/%d" % i
        assert conn.goaway is None


def test_frame_larger_than_max_frame_size_is_refused_from_its_header() -> None:
    with serve(ok) as port, RawH2(port) as conn:
        # Only the 9-byte header of a 10 MB DATA frame: no need to wait for the payload.
        conn.send_raw(struct.pack(">I", 10_000_000)[1:] + b"\x00\x00" + struct.pack(">I", 1))
        assert conn.wait_goaway().error_code == FRAME_SIZE_ERROR
        assert_healthy(port)


def test_garbage_frames_get_goaway_never_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(2023)
    goaways = 0
    with caplog.at_level(logging.INFO), serve_harness(ok) as server:
        for _ in range(30):
            with RawH2(server.port) as conn:
                if rng.random() < 0.3:
                    junk = rng.randbytes(rng.randint(1, 400))
                else:  # complete frames with random types, flags, stream ids and payloads
                    junk = b"".join(
                        struct.pack(">I", n)[1:]
                        + bytes([rng.randint(0, 12), rng.randint(0, 255)])
                        + struct.pack(">I", rng.choice([0, 1, 2, 3, 2**31 - 1]))
                        + rng.randbytes(n)
                        for n in (rng.randint(0, 40) for _ in range(rng.randint(1, 8)))
                    )
                conn.send_raw(junk)
                with contextlib.suppress(TimeoutError):  # an incomplete frame: it waits
                    conn.wait_closed(timeout=0.15)
                goaways += conn.goaway is not None
        assert_healthy(server.port)
    assert goaways >= 10
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []  # no exception escaped into asyncio or the connection's handlers
