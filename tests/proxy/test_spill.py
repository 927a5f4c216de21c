"""The proxy's temp files: spill buffers and request spools against a real directory, a
per-worker budget, a per-response cap, and a disk that is really full (/dev/full)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from bext.proxy.spill import RequestSpool, SpillBuffer
from bext.proxy.tempspace import TempSpace, TempSpaceFull

KiB = 1024
MiB = 1024 * KiB


def open_temp_files(directory: Path) -> list[str]:
    """This process's open, unlinked files in ``directory`` (what a leak looks like)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)) and target.endswith("(deleted)"):
            found.append(target)
    return found


class FullDisk(TempSpace):
    """A temp space whose files are /dev/full: every write fails with a real ENOSPC."""

    def open(self) -> int:
        return os.open("/dev/full", os.O_RDWR | os.O_CLOEXEC)


def pieces(count: int, size: int = 16 * KiB) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(count)]


def drain(buffer: SpillBuffer) -> bytes:
    out = []
    while data := buffer.read_nowait():
        out.append(data)
    return b"".join(out)


class Flow:
    """The upstream connection's side of a spill buffer: is reading paused?"""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False


def test_spill_file_is_anonymous_counted_and_given_back(tmp_path: Path) -> None:
    space = TempSpace(tmp_path, budget=10 * MiB)
    buffer = SpillBuffer(64 * KiB, MiB, space)
    data = pieces(16)  # 256 KiB: 64 KiB in memory, the rest on disk
    for piece in data:
        buffer.feed(piece)
    assert len(open_temp_files(tmp_path)) == 1
    assert os.listdir(tmp_path) == []  # never visible by name
    assert space.used == buffer.on_disk == 192 * KiB
    assert drain(buffer) == b"".join(data)
    assert space.used == 0  # drained: the file is emptied and its bytes given back
    buffer.feed(b"x")
    buffer.close()
    buffer.close()  # twice is harmless
    assert open_temp_files(tmp_path) == [] and space.used == 0


def test_budget_falls_back_to_back_pressure_never_loses_data(tmp_path: Path) -> None:
    """Past temp_budget the read-ahead stays in memory and the producer is paused; every
    byte still comes out, in order."""
    space = TempSpace(tmp_path, budget=128 * KiB)
    flow = Flow()
    buffer = SpillBuffer(64 * KiB, MiB, space, on_pause=flow.pause, on_resume=flow.resume)
    sent: list[bytes] = []
    received: list[bytes] = []
    for piece in pieces(200):
        buffer.feed(piece)
        sent.append(piece)
        assert space.used <= space.budget
        assert buffer.buffered - buffer.on_disk <= 64 * KiB + 16 * KiB  # memory stays bounded
        while flow.paused:  # the client reads only while the upstream is held back
            data = buffer.read_nowait()
            assert data
            received.append(data)
    assert flow.pauses >= 1
    buffer.end()
    received.append(drain(buffer))
    assert b"".join(received) == b"".join(sent)
    buffer.close()
    assert space.used == 0 and open_temp_files(tmp_path) == []


def test_max_temp_file_size_caps_one_response_on_disk(tmp_path: Path) -> None:
    space = TempSpace(tmp_path, budget=10 * MiB)
    flow = Flow()
    buffer = SpillBuffer(32 * KiB, 96 * KiB, space, on_pause=flow.pause, on_resume=flow.resume)
    for piece in pieces(8):
        buffer.feed(piece)
    assert buffer.on_disk == 96 * KiB and flow.paused
    zero = SpillBuffer(32 * KiB, 0, space, on_pause=flow.pause, on_resume=flow.resume)
    for piece in pieces(8):
        zero.feed(piece)
    assert zero.on_disk == 0  # max_temp_file_size = 0: memory read-ahead only
    assert len(open_temp_files(tmp_path)) == 1
    buffer.close()
    zero.close()


def test_full_disk_keeps_the_response_whole_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    space = FullDisk(tmp_path)
    flow = Flow()
    buffer = SpillBuffer(64 * KiB, MiB, space, on_pause=flow.pause, on_resume=flow.resume)
    data = pieces(8)
    with caplog.at_level(logging.INFO, logger="bext"):
        for piece in data:
            buffer.feed(piece)  # would raise ENOSPC before
    assert flow.paused and space.used == 0
    buffer.end()
    assert asyncio.run(buffer.read()) == data[0]
    assert drain(buffer) == b"".join(data[1:])
    buffer.close()
    lines = [r for r in caplog.records if "no space left on device" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, caplog.text
    assert lines[0].levelno == logging.ERROR


def test_request_spool_over_budget_is_refused_and_closed(tmp_path: Path) -> None:
    space = TempSpace(tmp_path, budget=2 * MiB)
    spool = RequestSpool(MiB, space)
    with pytest.raises(TempSpaceFull):
        spool.reserve(3 * MiB)  # a declared length that cannot fit: refused at once
    spool.close()
    assert space.used == 0

    first = RequestSpool(MiB, space)
    first.reserve(int(1.5 * MiB))
    assert space.used == int(1.5 * MiB)
    second = RequestSpool(MiB, space)
    with pytest.raises(TempSpaceFull):  # chunked (no declared length): refused half way
        for piece in pieces(80):
            second.feed(piece)
    second.close()
    assert space.used == int(1.5 * MiB)
    for piece in pieces(96):
        first.feed(piece)
    assert b"".join(first.chunks()) == b"".join(pieces(96))
    first.release()
    assert space.used == 0 and open_temp_files(tmp_path) == []


def test_request_spool_on_a_full_disk_raises_temp_space_full(tmp_path: Path) -> None:
    space = FullDisk(tmp_path)
    spool = RequestSpool(64 * KiB, space)
    with pytest.raises(TempSpaceFull, match="No space left on device"):
        for piece in pieces(8):
            spool.feed(piece)
    spool.close()
    assert space.used == 0


def test_request_spool_stays_open_while_a_sender_holds_it(tmp_path: Path) -> None:
    space = TempSpace(tmp_path)
    spool = RequestSpool(16 * KiB, space)
    for piece in pieces(4):
        spool.feed(piece)
    assert spool.hold()  # a sender task starts
    spool.release()  # the handler is done with it
    assert b"".join(spool.chunks()) == b"".join(pieces(4))
    assert len(open_temp_files(tmp_path)) == 1
    spool.release()  # the sender is done
    assert open_temp_files(tmp_path) == [] and space.used == 0
    assert not spool.hold()
    with pytest.raises(ConnectionError):
        list(spool.chunks())
