"""The ``h2`` library (pure Python) as a bext HTTP/2 engine (:mod:`bext.protocol.h2_engine`).

The state machine is configured by :func:`~bext.protocol.h2_state.new_h2_state`; this
adapter only translates. h2's events map one to one, except that it reports a client's
GOAWAY as ConnectionTerminated and refuses to send anything afterwards, and that its
``ProtocolError`` on input (with its GOAWAY queued already) becomes :class:`EngineFailed`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import h2.events
import h2.exceptions

from bext.protocol import h2_engine as ev
from bext.protocol.h2_engine import EngineEvent, EngineFailed, Fields, StreamGone
from bext.protocol.h2_limits import H2Limits
from bext.protocol.h2_state import new_h2_state


def _request(event: h2.events.RequestReceived) -> EngineEvent:
    return ev.RequestReceived(event.stream_id, event.headers, event.stream_ended is not None)


def _data(event: h2.events.DataReceived) -> EngineEvent:
    return ev.DataReceived(event.stream_id, event.data, event.flow_controlled_length)


def _ended(event: h2.events.StreamEnded) -> EngineEvent:
    return ev.StreamEnded(event.stream_id)


def _trailers(event: h2.events.TrailersReceived) -> EngineEvent:
    return ev.TrailersReceived(event.stream_id, event.headers)


def _reset(event: h2.events.StreamReset) -> EngineEvent:
    return ev.StreamReset(event.stream_id, event.error_code, event.remote_reset)


def _acked(event: h2.events.SettingsAcknowledged) -> EngineEvent:
    return ev.SettingsAcknowledged()


def _terminated(event: h2.events.ConnectionTerminated) -> EngineEvent:
    return ev.ConnectionTerminated(int(event.error_code or 0))


_MAP: dict[type[h2.events.Event], Callable[[Any], EngineEvent]] = {
    h2.events.RequestReceived: _request,
    h2.events.DataReceived: _data,
    h2.events.StreamEnded: _ended,
    h2.events.TrailersReceived: _trailers,
    h2.events.StreamReset: _reset,
    h2.events.SettingsAcknowledged: _acked,
    h2.events.ConnectionTerminated: _terminated,
}
"""The events bext acts on; window and settings changes only need the pump, which runs
after every read anyway."""


class H2LibEngine:
    __slots__ = ("_state",)

    name = "h2"

    def __init__(self, limits: H2Limits, header_list_size: int) -> None:
        self._state = new_h2_state(limits, header_list_size)

    @property
    def max_send_chunk(self) -> int:
        # One frame per turn: h2 frames what it is given at once, in Python.
        return self._state.max_outbound_frame_size

    @property
    def highest_inbound_stream_id(self) -> int:
        return self._state.highest_inbound_stream_id

    def receive_data(self, data: bytes) -> list[EngineEvent]:
        try:
            events = self._state.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # h2 queued the matching GOAWAY
            raise EngineFailed(str(exc) or type(exc).__name__) from exc
        out: list[EngineEvent] = []
        for event in events:
            convert = _MAP.get(type(event))
            if convert is not None:
                out.append(convert(event))
        return out

    def data_to_send(self) -> bytes:
        return self._state.data_to_send()

    def send_headers(self, stream_id: int, fields: Fields, end_stream: bool) -> None:
        try:
            self._state.send_headers(stream_id, fields, end_stream=end_stream)
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(str(exc)) from exc

    def send_informational(self, stream_id: int, fields: Fields) -> None:
        self._state.send_headers(stream_id, fields)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        try:
            self._state.send_data(stream_id, data, end_stream=end_stream)
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(str(exc)) from exc

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        self._state.send_headers(stream_id, fields, end_stream=True)

    def end_stream(self, stream_id: int) -> None:
        self._state.end_stream(stream_id)

    def send_window(self, stream_id: int) -> int:
        try:
            return self._state.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError as exc:
            raise StreamGone(str(exc)) from exc

    def acknowledge(self, stream_id: int, size: int) -> None:
        # h2 reopens the connection window even for a stream that has closed meanwhile.
        self._state.acknowledge_received_data(size, stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        # Both sides may have ended it meanwhile: then there is nothing left to reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._state.reset_stream(stream_id, error_code)

    def close_connection(self, error_code: int, last_stream_id: int | None) -> None:
        self._state.close_connection(error_code=error_code, last_stream_id=last_stream_id)
