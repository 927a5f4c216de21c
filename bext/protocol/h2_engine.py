"""The seam between bext's HTTP/2 connection and the library that speaks the protocol.

:class:`~bext.worker.h2_connection.H2Connection` owns the I/O, the streams and every policy
(limits, timeouts, floods, draining); the protocol state machine (framing, HPACK, stream
states, flow-control accounting) is an *engine*: the pure-Python ``h2`` library, or
libnghttp2 through ``ngh2``. Both are sans-IO, but their events and their corner cases
differ, so each sits behind an adapter (:mod:`bext.protocol.h2_engine_h2`,
:mod:`bext.protocol.h2_engine_ngh2`) that turns its events into the few bext acts on,
defined here, and takes the few calls bext makes (:class:`H2Engine`). The connection is
written once against this module and never imports either library.

``server.http2.engine`` picks one: ``"nghttp2"``, ``"h2"`` or ``"auto"`` (nghttp2 when
``ngh2`` imports: its C state machine costs a fraction of h2's per request).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from bext.protocol.h2_limits import HTTP2_ENGINES, H2Limits

__all__ = [
    "HTTP2_ENGINES",
    "ConnectionFailed",
    "ConnectionTerminated",
    "DataReceived",
    "EngineEvent",
    "EngineFailed",
    "ErrorCode",
    "H2Engine",
    "RequestReceived",
    "SettingsAcknowledged",
    "StreamEnded",
    "StreamGone",
    "StreamRejected",
    "StreamReset",
    "TrailersReceived",
    "available",
    "new_engine",
    "resolve",
]

Fields = Sequence[tuple[bytes, bytes]]
"""A header section as the engines take and give it: lowercase names, bytes throughout."""


class ErrorCode(IntEnum):
    """The RFC 9113 §7 error codes bext sends (both libraries take plain ints)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    ENHANCE_YOUR_CALM = 0xB


# -- events ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestReceived:
    """A request's header section (unvalidated: :mod:`bext.protocol.h2_headers` checks it)."""

    stream_id: int
    headers: Fields
    end_stream: bool


@dataclass(slots=True)
class DataReceived:
    """Body bytes; ``flow_controlled_length`` counts padding too (acknowledge all of it)."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(slots=True)
class StreamEnded:
    """The client's END_STREAM (after the body, or after trailers)."""

    stream_id: int


@dataclass(slots=True)
class TrailersReceived:
    """Request trailers; a :class:`StreamEnded` for the stream follows."""

    stream_id: int
    headers: Fields


@dataclass(slots=True)
class StreamReset:
    """A stream the client cancelled (``remote``) or the engine reset for a stream error."""

    stream_id: int
    error_code: int
    remote: bool


@dataclass(slots=True)
class StreamRejected:
    """A stream the engine refused before bext saw its request (nghttp2 checks request
    headers itself and resets a malformed one): it counts like a reset bext sends."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class SettingsAcknowledged:
    """The client acknowledged bext's SETTINGS: from now on it knows the limits."""


@dataclass(slots=True)
class ConnectionTerminated:
    """The client sent GOAWAY."""

    error_code: int


@dataclass(slots=True)
class ConnectionFailed:
    """The engine found a connection error on its own and queued its GOAWAY already."""

    error_code: int
    reason: str


EngineEvent = (
    RequestReceived
    | DataReceived
    | StreamEnded
    | TrailersReceived
    | StreamReset
    | StreamRejected
    | SettingsAcknowledged
    | ConnectionTerminated
    | ConnectionFailed
)


class EngineFailed(Exception):
    """The input broke the protocol beyond repair. The engine's GOAWAY, if it could make
    one, comes out of :meth:`H2Engine.data_to_send`; nothing else will."""


class StreamGone(Exception):
    """The engine has closed the stream already (both sides ended it, or it reset it)."""


# -- the engine interface -------------------------------------------------------------------


class H2Engine(Protocol):
    """What :class:`~bext.worker.h2_connection.H2Connection` needs of a protocol library.

    Flow control towards the handler stays bext's: engines never send WINDOW_UPDATE on
    their own, only for what :meth:`acknowledge` reports consumed. Outbound, bext asks
    :meth:`send_window` before each :meth:`send_data` and never queues more than it says.
    """

    name: str
    """``"h2"`` or ``"nghttp2"``: in logs and tests."""

    @property
    def max_send_chunk(self) -> int:
        """Body bytes to queue per :meth:`send_data` call, so streams take turns."""
        ...

    @property
    def highest_inbound_stream_id(self) -> int:
        """The last stream the client opened that bext may have processed (for GOAWAY)."""
        ...

    def receive_data(self, data: bytes) -> list[EngineEvent]:
        """Parse ``data``; the events it caused. Raises :class:`EngineFailed`."""
        ...

    def data_to_send(self) -> bytes:
        """Everything queued for the wire so far (never raises)."""
        ...

    def send_headers(self, stream_id: int, fields: Fields, end_stream: bool) -> None:
        """A final response head (``:status`` first). Raises :class:`StreamGone`."""
        ...

    def send_informational(self, stream_id: int, fields: Fields) -> None:
        """A 1xx head (100 Continue)."""
        ...

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        """Body bytes within :meth:`send_window`. Raises :class:`StreamGone`."""
        ...

    def send_trailers(self, stream_id: int, fields: Fields) -> None:
        """Response trailers, ending the stream."""
        ...

    def end_stream(self, stream_id: int) -> None:
        """End the response without trailers (an empty END_STREAM DATA frame)."""
        ...

    def send_window(self, stream_id: int) -> int:
        """Body bytes the client's windows (stream and connection) take now, less what is
        queued already. Raises :class:`StreamGone`."""
        ...

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The handler consumed ``size`` bytes of the stream's body (or they were dropped):
        reopen both windows for them. A stream that is gone by now still frees the
        connection window."""
        ...

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM, unless the stream is closed on both sides already."""
        ...

    def close_connection(self, error_code: int, last_stream_id: int | None) -> None:
        """A final GOAWAY; the engine sends nothing more after it."""
        ...


# -- choosing one ---------------------------------------------------------------------------

AUTO: str | None = None
"""What ``"auto"`` means; None until first needed (then nghttp2 if ``ngh2`` imports, else
h2). A module attribute, so the test suite can run every HTTP/2 test on each engine."""


def available(name: str) -> bool:
    """Whether engine ``name``'s library is installed (without importing it)."""
    if name == "nghttp2":
        return importlib.util.find_spec("ngh2") is not None
    return name in HTTP2_ENGINES


def resolve(name: str) -> str:
    """The engine that ``name`` (a ``server.http2.engine`` value) stands for."""
    global AUTO
    if name != "auto":
        return name
    if AUTO is None:
        AUTO = "nghttp2" if available("nghttp2") else "h2"
    return AUTO


class EngineFactory(Protocol):
    def __call__(self, limits: H2Limits, header_list_size: int) -> H2Engine: ...


_FACTORIES: dict[str, EngineFactory] = {}


def preload(limits: H2Limits) -> None:
    """Import the adapter (and its library) that ``limits`` selects now: the master does,
    before it forks, so that its workers share the pages instead of each importing it on
    its first HTTP/2 connection."""
    _factory(resolve(limits.engine))


def _factory(name: str) -> EngineFactory:
    """The adapter class for ``name``, imported on first use: a worker that never speaks
    HTTP/2, or speaks it with one engine, never loads the other library."""
    factory = _FACTORIES.get(name)
    if factory is None:
        if name == "nghttp2":
            from bext.protocol.h2_engine_ngh2 import NgH2Engine

            factory = NgH2Engine
        else:
            from bext.protocol.h2_engine_h2 import H2LibEngine

            factory = H2LibEngine
        _FACTORIES[name] = factory
    return factory


def new_engine(limits: H2Limits, header_list_size: int) -> H2Engine:
    """A server engine for one connection, its SETTINGS (and connection WINDOW_UPDATE)
    already queued: ``header_list_size`` is the advertised SETTINGS_MAX_HEADER_LIST_SIZE;
    twice it is the hard HPACK limit past which the connection goes (HPACK bomb)."""
    return _factory(resolve(limits.engine))(limits, header_list_size)
