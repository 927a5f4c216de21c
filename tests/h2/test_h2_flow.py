"""HTTP/2 flow control both ways: what a stream can make bext hold, and slow readers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hyperframe.frame import DataFrame, RstStreamFrame, WindowUpdateFrame

from bext.http.message import Request, Response
from bext.protocol.h2_limits import H2Limits
from bext.worker.context import Timeouts
from tests.h2.h2client import CANCEL, RawH2
from tests.h2.test_h2_clients import curl, needs_curl
from tests.support.inproc import serve, serve_harness

INITIAL_WINDOW = 0x4  # SETTINGS_INITIAL_WINDOW_SIZE


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_upload_buffering_is_bounded_by_the_stream_window(loop: str) -> None:
    """A handler that does not read yet gets at most one window of body, not the upload."""
    seen: list[int] = []

    async def slow_reader(request: Request) -> Response:
        await asyncio.sleep(0.5)
        seen.append(request.body.received)  # bytes taken off the connection meanwhile
        sha = hashlib.sha256()
        async for chunk in request.body:
            sha.update(chunk)
        return Response(200, [], sha.hexdigest().encode())

    data = os.urandom(4 * 1024 * 1024)
    with (
        serve(slow_reader, loop=loop) as port,
        httpx.Client(http1=False, http2=True, timeout=20) as client,
    ):
        r = client.post(f"http://127.0.0.1:{port}/", content=data)
        assert r.text == hashlib.sha256(data).hexdigest()
    assert seen[0] <= H2Limits().initial_window_size


@needs_curl
@pytest.mark.parametrize("window", [64 * 1024, 65535])
def test_smallest_configurable_windows_carry_an_upload(window: int, tmp_path: Path) -> None:
    """At the config minimum (64 KiB, stream and connection) a client that sends its body
    before it has seen bext's SETTINGS (curl does) stays within the windows: no error."""

    async def hashing(request: Request) -> Response:
        sha = hashlib.sha256()
        async for chunk in request.body:
            sha.update(chunk)
        return Response(200, [], sha.hexdigest().encode())

    data = os.urandom(3 * 1024 * 1024)
    upload = tmp_path / "up.bin"
    upload.write_bytes(data)
    limits = H2Limits(initial_window_size=window, connection_window=window)
    with serve(hashing, h2=limits) as port:
        out = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}",
                   f"http://127.0.0.1:{port}/")  # fmt: skip
    assert out.stdout == hashlib.sha256(data).hexdigest(), out.stderr


def test_connection_window_bounds_all_streams_together() -> None:
    """Four uploads on one connection: until the handlers read, bext holds one connection
    window of their bodies in total (it acknowledges nothing meanwhile), not four stream
    windows; once they read, its WINDOW_UPDATEs carry every upload to the end.

    The client is the raw one, sending exactly what the windows allow as each WINDOW_UPDATE
    arrives. httpx cannot be the client here: its HTTP/2 connection can stall concurrent
    uploads on its own (httpcore's ``_wait_for_outgoing_flow`` blocks in a network read
    even when another stream's read has delivered the WINDOW_UPDATE it waits for, so once
    bext has nothing more to send the upload hangs with its windows open).
    """
    limits = H2Limits(initial_window_size=512 * 1024, connection_window=768 * 1024)
    size = 2_000_000
    started = threading.Event()
    release = asyncio.Event()
    seen: dict[bytes, int] = {}

    async def waiting(request: Request) -> Response:
        seen[request.target] = 0
        if len(seen) == 4:
            started.set()
        await release.wait()
        body = await request.body.read_all(1 << 30)
        return Response(200, [], b"%d" % len(body))

    sids = (1, 3, 5, 7)
    windows = {0: 65535}  # what the client may still send: the connection (0), each stream
    left = dict.fromkeys(sids, size)
    updates: list[WindowUpdateFrame] = []

    def read(conn: RawH2, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame in time")
        frame = conn.read_frame(left)
        assert frame is not None, "bext closed the connection"
        if isinstance(frame, WindowUpdateFrame):
            updates.append(frame)
            windows[frame.stream_id] = windows.get(frame.stream_id, 0) + frame.window_increment

    def upload(conn: RawH2) -> None:
        """Send DATA, stream by stream in turn, as far as the windows allow."""
        progress = True
        while progress:
            progress = False
            for sid in sids:
                n = min(16384, windows[0], windows[sid], left[sid])
                if n:
                    windows[0] -= n
                    windows[sid] -= n
                    left[sid] -= n
                    conn.data(sid, b"u" * n, end_stream=not left[sid])
                    progress = True

    with serve_harness(waiting, h2=limits) as server, RawH2(server.port) as conn:
        deadline = time.monotonic() + 5
        while not conn.server_settings or windows[0] < limits.connection_window:
            read(conn, deadline)
        assert windows[0] == limits.connection_window
        assert conn.server_settings[INITIAL_WINDOW] == limits.initial_window_size
        updates.clear()
        for sid in sids:
            windows[sid] = limits.initial_window_size
            conn.request(sid, b"/%d" % sid, b"POST", end_stream=False)
        upload(conn)
        assert windows[0] == 0 and all(left.values())  # the connection window ran out first
        assert started.wait(5)
        with pytest.raises(TimeoutError):
            while True:
                read(conn, time.monotonic() + 0.3)
        assert updates == []  # bext acknowledges nothing while the handlers wait
        buffered = server.call(
            lambda: sum(
                connection._streams[sid].body.received  # type: ignore[attr-defined]
                for connection in server.ctx.connections
                for sid in connection._streams  # type: ignore[attr-defined]
            )
        )
        assert buffered == limits.connection_window
        server.call(release.set)
        deadline = time.monotonic() + 20
        while not all(conn.reply(sid).ended for sid in sids):
            read(conn, deadline)
            upload(conn)
    assert not any(left.values())
    assert [(conn.reply(sid).status, conn.reply(sid).body) for sid in sids] == [
        (200, b"2000000")
    ] * 4


def test_response_stream_is_pulled_only_when_the_window_is_open() -> None:
    pulled: list[int] = []

    async def numbers() -> AsyncIterator[bytes]:
        for i in range(64):
            pulled.append(i)
            yield b"%06d" % i * 2000  # 12 kB chunks

    with (
        serve(lambda r: Response(200, [], stream=numbers())) as port,
        RawH2(port, settings={INITIAL_WINDOW: 0}) as conn,
    ):
        conn.request(1)
        reply = conn.reply(1)
        conn.read_until(lambda: bool(reply.headers), window=False)
        time.sleep(0.3)
        assert pulled == []  # window 0: not even the first chunk was taken
        conn.window_update(1, 12_000)
        conn.read_until(lambda: len(reply.body) == 12_000, window=False)
        time.sleep(0.2)
        assert len(pulled) <= 2
        conn.window_update(1, 1 << 30)
        conn.response(1)
        assert reply.body == b"".join(b"%06d" % i * 2000 for i in range(64))


def test_stream_with_closed_window_is_reset_after_send_timeout() -> None:
    """Stream 1's window never opens: it is reset; stream 3 and other connections go on."""
    big = b"b" * 500_000

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 50_000):
            yield big[start : start + 50_000]

    def handler(request: Request) -> Response:
        if request.target == b"/small":
            return Response(200, [], b"small")
        return Response(200, [], stream=chunks())

    timeouts = Timeouts(send=0.5)
    with (
        serve(handler, timeouts=timeouts) as port,
        RawH2(port, settings={INITIAL_WINDOW: 1024}) as conn,
    ):
        conn.request(1, b"/stuck")
        conn.request(3, b"/flowing")
        started = time.monotonic()
        stuck, flowing = conn.reply(1), conn.reply(3)
        while stuck.reset is None or not flowing.ended:
            frame = conn.read_frame(5)
            assert frame is not None
            if isinstance(frame, DataFrame) and frame.data:
                # The connection window stays open, and stream 3's; stream 1's never does.
                updates = [WindowUpdateFrame(0, window_increment=len(frame.data))]
                if frame.stream_id == 3:
                    updates.append(WindowUpdateFrame(3, window_increment=len(frame.data)))
                conn.send(*updates)
            if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
                elapsed = time.monotonic() - started
                with httpx.Client(http1=False, http2=True) as other:
                    assert other.get(f"http://127.0.0.1:{port}/small").text == "small"
        assert stuck.reset == CANCEL and 0.4 < elapsed < 3
        assert len(stuck.body) == 1024
        assert flowing.body == big and flowing.reset is None
        conn.request(5, b"/small")
        assert conn.response(5).body == b"small"


def test_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    big = os.urandom(1 << 20)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield big

    timeouts = Timeouts(send=0.5)
    with serve_harness(lambda r: Response(200, [], stream=endless()), timeouts=timeouts) as server:
        conn = RawH2(server.port, settings={INITIAL_WINDOW: (1 << 31) - 1}, rcvbuf=4096)
        conn.window_update(0, (1 << 31) - 1 - 65535)
        conn.request(1)
        reply = conn.reply(1)
        conn.read_until(lambda: bool(reply.body), window=False)
        assert server.call(lambda: len(server.ctx.connections)) == 1
        started = time.monotonic()
        while server.call(lambda: len(server.ctx.connections)) and time.monotonic() < started + 10:
            time.sleep(0.05)
        assert server.call(lambda: len(server.ctx.connections)) == 0
        conn.close()
