"""libnghttp2, through ``ngh2``, as a bext HTTP/2 engine (:mod:`bext.protocol.h2_engine`).

nghttp2 does in C what h2 does in Python (framing, HPACK, stream states, flow-control
accounting), at a fraction of the cost per request. It differs from h2 in ways this adapter
absorbs, so the connection's policy stays written once:

* **Limits it enforces itself.** A stream over SETTINGS_MAX_CONCURRENT_STREAMS is a
  *connection* error for nghttp2 once the client has acknowledged the SETTINGS; RFC 9113
  §5.1.2 and bext want a stream error. So nghttp2 is configured with twice the limit and
  the SETTINGS frame on the wire is rewritten to advertise the real one (what the h2 adapter
  does with h2's local settings): bext refuses streams over it one by one, nghttp2 only
  catches a client that blows far past it. Header lists past twice the advertised size are
  refused by nghttp2 while decoding (the HPACK bomb), as with h2.
* **Request checks it does itself.** nghttp2 validates request header sections (RFC 9113
  §8.2-8.3) and resets a malformed one with RST_STREAM(PROTOCOL_ERROR) before the
  application sees it, so no 400 says why; the reset is reported as
  :class:`~bext.protocol.h2_engine.StreamRejected` and counts against the reset budget as
  bext's own resets of malformed requests do. What nghttp2 lets through (e.g. ``host``
  unlike ``:authority``, values with surrounding spaces, bext's size limits) still gets
  bext's 400/413/431 from :mod:`bext.protocol.h2_headers`.
* **Events only as it writes.** nghttp2 reports the streams it resets and the GOAWAY it
  sends on a peer's protocol error only while serialising them, so :meth:`receive_data`
  collects the output at once and keeps it for :meth:`data_to_send`.
* **Fatal input.** Past a resource limit (``DenialOfServiceError``) the session is dead and
  produces no GOAWAY: the adapter writes one itself.
* **Ends of streams.** END_STREAM comes as a flag on the request, DATA or trailers, and
  padding is acknowledged internally; the adapter emits bext's separate events.
* **Outbound bodies** are queued inside ngh2 until nghttp2 frames them, so the window bext
  may use is the peer's window less what is queued (:meth:`send_window`).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import ngh2
from ngh2 import ErrorCode, Setting

from bext.protocol import h2_engine as ev
from bext.protocol.h2_engine import EngineEvent, EngineFailed, Fields, StreamGone
from bext.protocol.h2_guard import goaway_frame
from bext.protocol.h2_limits import H2Limits

_SETTINGS_HEADER = struct.Struct(">HBBBL")  # length (24 bits, as 16 + 8), type, flags, stream
_SETTINGS = 0x4
_SEND_CHUNK = 64 * 1024
"""Body bytes queued per ``send_data``: nghttp2 frames and interleaves them itself, so a
chunk need not be one frame; bext still only queues what the windows take."""

_NO_LIMIT = 1 << 32
"""A token bucket nghttp2 never empties: the limit is bext's (still far from overflow)."""

_GONE = (ngh2.StreamProtocolError, ngh2.ConnectionStateError)
"""What ngh2 raises for a stream (or session) that is closed already."""


def _settings_frame(settings: dict[int, int]) -> bytes:
    payload = ngh2.pack_settings_payload(settings)
    size = len(payload)
    return _SETTINGS_HEADER.pack(size >> 8, size & 0xFF, _SETTINGS, 0, 0) + payload


class NgH2Engine:
    __slots__ = ("_closing", "_conn", "_done", "_highest", "_open", "_out")

    name = "nghttp2"

    def __init__(self, limits: H2Limits, header_list_size: int) -> None:
        config = ngh2.Configuration(
            auto_window_update=False,  # bext acknowledges DATA as the handler consumes it
            max_inbound_header_list_size=2 * header_list_size,  # hard HPACK limit
            # The frame guard bounds a header block's bytes; this bounds its frame count
            # (as h2 does), against endless empty CONTINUATION frames.
            max_continuations=64,
            # Rapid reset is bext's to judge (FrameGuard, with max_resets, ENHANCE_YOUR_CALM),
            # but only once the read is parsed, and one read holds up to ~20,000 RST_STREAM
            # frames: nghttp2's own bucket (which answers INTERNAL_ERROR) must not trip first.
            stream_reset_rate_limit=(_NO_LIMIT, _NO_LIMIT),
            # Response heads are bext's and its upstreams' (h2 sends any size): nghttp2's
            # 64 KiB default would reset a stream with a large Set-Cookie set instead.
            max_send_header_block_length=1 << 20,
        )
        conn = ngh2.Connection(ngh2.Role.SERVER, config)
        advertised: dict[int, int] = {
            Setting.HEADER_TABLE_SIZE: limits.header_table_size,
            Setting.ENABLE_PUSH: 0,
            Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            Setting.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            Setting.MAX_FRAME_SIZE: limits.max_frame_size,
            Setting.MAX_HEADER_LIST_SIZE: header_list_size,
        }
        conn.initiate_connection(
            {**advertised, Setting.MAX_CONCURRENT_STREAMS: 2 * limits.max_concurrent_streams}
        )
        if limits.connection_window > 65535:
            conn.set_local_window_size(limits.connection_window)
        out = conn.data_to_send()
        # The first frame is nghttp2's SETTINGS, with the doubled stream limit: replace it.
        hi, lo, kind, _flags, _sid = _SETTINGS_HEADER.unpack_from(out)
        if kind != _SETTINGS:  # pragma: no cover - nghttp2 always starts with SETTINGS
            raise RuntimeError("nghttp2 did not start with SETTINGS")
        end = 9 + (hi << 8 | lo)
        self._out: list[bytes] = [_settings_frame(advertised), out[end:]]
        self._conn = conn
        self._open: set[int] = set()  # streams reported to bext that nghttp2 still has
        self._closing: set[int] = set()  # reset by the client, closing in nghttp2
        self._highest = 0
        self._done = False  # the session is over (dead, or bext sent its final GOAWAY)

    @property
    def max_send_chunk(self) -> int:
        return _SEND_CHUNK

    @property
    def highest_inbound_stream_id(self) -> int:
        return self._highest

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[EngineEvent]:
        if self._done:
            return []
        conn = self._conn
        try:
            conn.receive_data(data)
            events = conn.events()
            # Streams nghttp2 resets and the GOAWAY it sends are only reported as they are
            # serialised: take the output now so their events are among this read's.
            output = conn.data_to_send()
            if output:
                self._out.append(output)
                events += conn.events()
        except ngh2.DenialOfServiceError as exc:
            self._die(ErrorCode.ENHANCE_YOUR_CALM)
            raise EngineFailed(str(exc)) from exc
        except ngh2.NGH2Error as exc:
            self._die(ErrorCode.PROTOCOL_ERROR)
            raise EngineFailed(str(exc)) from exc
        out: list[EngineEvent] = []
        append = out.append
        for event in events:  # (isinstance, not a dict of handlers: mypy narrows it)
            if isinstance(event, ngh2.DataReceived):
                sid = event.stream_id
                size = len(event.data)
                append(ev.DataReceived(sid, event.data, size))
                if event.end_stream:
                    append(ev.StreamEnded(sid))
            elif isinstance(event, ngh2.RequestReceived):
                sid = event.stream_id
                self._open.add(sid)
                if sid > self._highest:
                    self._highest = sid
                append(ev.RequestReceived(sid, event.headers, event.end_stream))
            elif isinstance(event, ngh2.StreamClosed):
                self._closed(event, append)
            elif isinstance(event, ngh2.TrailersReceived):
                append(ev.TrailersReceived(event.stream_id, event.headers))
                append(ev.StreamEnded(event.stream_id))
            elif isinstance(event, ngh2.StreamReset):
                sid = event.stream_id
                self._open.discard(sid)
                self._closing.add(sid)
                append(ev.StreamReset(sid, event.error_code, True))
            elif isinstance(event, ngh2.SettingsAcknowledged):
                append(ev.SettingsAcknowledged())
            elif isinstance(event, ngh2.GoAwayReceived):
                append(ev.ConnectionTerminated(event.error_code))
            elif isinstance(event, ngh2.ConnectionClosed):
                self._done = True
                reason = event.debug_data.decode("ascii", "replace") or "protocol error"
                append(ev.ConnectionFailed(event.error_code, reason))
        return out

    def _closed(self, event: ngh2.StreamClosed, emit: Callable[[EngineEvent], None]) -> None:
        """nghttp2 forgot a stream: news for bext only if nghttp2 reset it on its own."""
        sid = event.stream_id
        code = event.error_code
        if sid in self._open:
            self._open.discard(sid)
            if code:  # a stream error nghttp2 found (e.g. more DATA than content-length)
                emit(ev.StreamReset(sid, code, False))
        elif sid in self._closing:
            self._closing.discard(sid)  # the client's reset, reported already
        elif code:
            emit(ev.StreamRejected(sid, code))  # a request nghttp2 refused unseen

    def _die(self, code: int) -> None:
        """The session is unusable: nghttp2 will write nothing more, not even GOAWAY."""
        self._done = True
        self._out.append(goaway_frame(self._highest, code))

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._out
        try:
            data = self._conn.data_to_send()
        except ngh2.NGH2Error:
            data = b""  # a dead session: what was collected (and our GOAWAY) is all
        if not out:
            return data
        if data:
            out.append(data)
        joined = b"".join(out)
        out.clear()
        return joined

    def send_headers(self, stream_id: int, fields: Fields, end_stream: bool) -> None:
        try:
            self._conn.send_response(stream_id, fields, end_stream=end_stream)
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc

    def send_informational(self, stream_id: int, fields: Fields) -> None:
        try:
            self._conn.send_informational_response(stream_id, fields)
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        try:
            self._conn.send_data(stream_id, data, end_stream=end_stream)
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        try:
            self._conn.send_trailers(stream_id, fields)
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc

    def end_stream(self, stream_id: int) -> None:
        try:
            self._conn.end_stream(stream_id)
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc

    def send_window(self, stream_id: int) -> int:
        conn = self._conn
        try:
            stream = conn.stream_remote_window_size(stream_id) - conn.queued_body_size(stream_id)
            connection = conn.remote_window_size - conn.queued_body_size()
        except _GONE as exc:
            raise StreamGone(str(exc)) from exc
        return min(stream, connection)

    def acknowledge(self, stream_id: int, size: int) -> None:
        # A stream nghttp2 has closed already: it consumed the connection window itself.
        with contextlib.suppress(ngh2.NGH2Error, ValueError):
            self._conn.acknowledge_received_data(size, stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        with contextlib.suppress(ngh2.NGH2Error):  # a dead session: nothing goes out
            self._conn.reset_stream(stream_id, error_code)

    def close_connection(self, error_code: int, last_stream_id: int | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._conn.terminate_connection(error_code, last_stream_id=last_stream_id)
        except ngh2.NGH2Error:
            self._out.append(goaway_frame(last_stream_id or self._highest, error_code))
