"""Frame-level accounting against HTTP/2 resource-exhaustion attacks, before the engine
(h2 or nghttp2, :mod:`bext.protocol.h2_engine`) sees a byte.

h2 bounds some abuse itself: a decoded header list larger than the decoder's
``max_header_list_size`` is refused (HPACK bomb), and a header block may span at most 64
CONTINUATION frames. But 64 frames of 16 KiB is 1 MiB buffered per connection before h2
notices, and h2 answers every SETTINGS and PING with an ACK however many arrive. So the
connection passes every chunk it reads through :class:`FrameGuard` first: it walks the
9-byte frame headers (never the payloads: one ``unpack_from`` per frame) and reports

* a header block (HEADERS + CONTINUATION) growing past the header-size limit, as soon as
  the frame header that would cross it arrives (the 2024 CONTINUATION flood, VU#421644);
* more SETTINGS or PING frames per window than a client has reason to send (CVE-2019-9515,
  CVE-2019-9512), and empty DATA frames that carry nothing and end nothing (CVE-2019-9518):
  cheap to send, each costs h2 an event;
* a frame longer than SETTINGS_MAX_FRAME_SIZE, from its header: h2 would only check the
  length after buffering the whole frame, up to 16 MiB;

and counts the streams a client cancels (:meth:`FrameGuard.stream_reset`, CVE-2023-44487).
Each verdict is an HTTP/2 error code and a reason; the connection answers it with GOAWAY.
"""

from __future__ import annotations

import struct

from bext.protocol.h2_limits import H2Limits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4); h2 checks it, the guard skips it."""

_FRAME_HEADER = struct.Struct(">HBBB")
"""Length (24 bits, read as 16 + 8), type, flags; the stream id is not needed here."""

_DATA = 0x0
_HEADERS = 0x1
_SETTINGS = 0x4
_PING = 0x6
_GOAWAY = 0x7
_CONTINUATION = 0x9
_WATCHED = frozenset({_HEADERS, _SETTINGS, _PING, _CONTINUATION})

_FLAG_ACK = 0x1
_FLAG_END_STREAM = 0x1
_FLAG_END_HEADERS = 0x4

_GOAWAY_FRAME = struct.Struct(">HBBBLLL")

FRAME_SIZE_ERROR = 0x6
ENHANCE_YOUR_CALM = 0xB

Verdict = tuple[int, str]
"""(HTTP/2 error code for the GOAWAY, reason for the log)."""


def goaway_frame(last_stream_id: int, error_code: int) -> bytes:
    """A GOAWAY frame, for a graceful shutdown that h2 cannot do.

    h2 moves its state machine to CLOSED when it sends GOAWAY and refuses to send anything
    afterwards, so it cannot finish the streams a graceful GOAWAY promised to finish. The
    connection writes this frame itself and the engine never learns of it (on nghttp2 too,
    so that the drain, and the REFUSED_STREAM for later streams, is bext's on both). The
    nghttp2 adapter also writes one when a flood has killed nghttp2's session.
    """
    return _GOAWAY_FRAME.pack(0, 8, _GOAWAY, 0, 0, last_stream_id & 0x7FFFFFFF, error_code)


class RateWindow:
    """Counts events in fixed windows of ``period`` seconds: O(1), no timestamps kept.

    A burst straddling two windows may reach twice ``limit`` before it trips; the limits
    are set far above what clients need, so that slack does not matter.
    """

    __slots__ = ("_count", "_start", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._start = -period
        self._count = 0

    def hit(self, now: float) -> bool:
        """Count one event at ``now``; True when the window holds more than ``limit``."""
        if now - self._start >= self.period:
            self._start = now
            self._count = 0
        self._count += 1
        return self._count > self.limit


class FrameGuard:
    __slots__ = (
        "_block",
        "_empty",
        "_head",
        "_max_block",
        "_max_frame",
        "_pings",
        "_resets",
        "_settings",
        "_skip",
    )

    def __init__(self, limits: H2Limits, max_header_block: int) -> None:
        self._max_block = max_header_block
        self._max_frame = limits.max_frame_size
        self._skip = len(PREFACE)  # bytes to pass over before the next frame header
        self._head = b""  # a frame header split across reads
        self._block = 0  # header block bytes so far, while one is open
        self._pings = RateWindow(limits.max_pings, limits.rate_window)
        self._settings = RateWindow(limits.max_settings, limits.rate_window)
        self._resets = RateWindow(limits.max_resets, limits.rate_window)
        self._empty = RateWindow(limits.max_empty_frames, limits.rate_window)

    def feed(self, data: bytes, now: float) -> Verdict | None:
        """Account for the frames whose headers are in ``data``; a reason to stop, or None."""
        if self._head:
            # A frame header split across reads (then nothing was left to skip). Rare: a
            # read must end inside a 9-byte header, so copying the read costs nothing.
            data = self._head + data
            self._head = b""
        n = len(data)
        pos = self._skip
        if pos >= n:
            self._skip = pos - n
            return None
        self._skip = 0
        while pos + 9 <= n:
            hi, lo, kind, flags = _FRAME_HEADER.unpack_from(data, pos)
            length = hi << 8 | lo
            if length > self._max_frame:
                return FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"
            if kind in _WATCHED or not length:
                problem = self._frame(length, kind, flags, now)
                if problem is not None:
                    return problem
            pos += 9 + length
        if pos < n:
            self._head = data[pos:]
        else:
            self._skip = pos - n
        return None

    def stream_reset(self, now: float) -> Verdict | None:
        """A stream the client cancelled, or one bext refused: too many means rapid reset."""
        if self._resets.hit(now):
            return ENHANCE_YOUR_CALM, "too many stream resets (rapid reset)"
        return None

    def _frame(self, length: int, kind: int, flags: int, now: float) -> Verdict | None:
        """A frame the guard watches, or any empty frame."""
        if kind in (_HEADERS, _CONTINUATION):
            block = length if kind == _HEADERS else self._block + length
            if block > self._max_block:
                return ENHANCE_YOUR_CALM, "header block larger than the limit"
            self._block = 0 if flags & _FLAG_END_HEADERS else block
        elif kind == _DATA:
            if not flags & _FLAG_END_STREAM and self._empty.hit(now):
                return ENHANCE_YOUR_CALM, "empty DATA frame flood"
        elif kind == _PING:
            if not flags & _FLAG_ACK and self._pings.hit(now):
                return ENHANCE_YOUR_CALM, "PING flood"
        elif kind == _SETTINGS and not flags & _FLAG_ACK and self._settings.hit(now):
            return ENHANCE_YOUR_CALM, "SETTINGS flood"  # (an ACK of ours costs nothing)
        return None
