"""The engine seam (issue 18): which library a connection runs on, and the adapters' own
duties that the wire tests cannot see directly."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from hpack import Encoder
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from bext.http.message import Request, Response
from bext.protocol import h2_engine
from bext.protocol.h2_engine import new_engine, resolve
from bext.protocol.h2_engine_h2 import H2LibEngine
from bext.protocol.h2_engine_ngh2 import NgH2Engine
from bext.protocol.h2_guard import PREFACE
from bext.protocol.h2_limits import H2Limits
from tests.h2.h2client import RawH2
from tests.support.inproc import serve_harness


def ok(request: Request) -> Response:
    return Response(200, [], b"ok")


def test_connections_run_on_the_parametrised_engine(h2_engine_name: str) -> None:
    """The suite's engine parameter reaches the connection (else it tests one engine twice)."""
    with serve_harness(ok) as server, RawH2(server.port) as conn:
        conn.request(1)
        assert conn.response(1).status == 200
        names = server.call(lambda: [c._engine.name for c in server.ctx.connections])
        assert names == [h2_engine_name]


@pytest.mark.parametrize("configured", ["h2", "nghttp2"])
def test_an_engine_named_in_the_config_wins_over_auto(configured: str) -> None:
    with serve_harness(ok, h2=H2Limits(engine=configured)) as server, RawH2(server.port) as c:
        c.request(1)
        assert c.response(1).body == b"ok"
        names = server.call(lambda: [conn._engine.name for conn in server.ctx.connections])
        assert names == [configured]


def test_auto_prefers_nghttp2_when_ngh2_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2_engine, "AUTO", None)
    assert resolve("auto") == "nghttp2"  # ngh2 is a dependency: installed here
    monkeypatch.setattr(h2_engine, "AUTO", None)
    monkeypatch.setattr(h2_engine, "available", lambda name: name != "nghttp2")
    assert resolve("auto") == "h2"
    assert resolve("nghttp2") == "nghttp2"  # the config refuses that without ngh2


def _frames(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


@pytest.mark.parametrize("engine", [H2LibEngine, NgH2Engine])
def test_first_flight_advertises_the_real_limits(engine: type) -> None:
    """SETTINGS say the configured stream limit, although both libraries are set to twice
    it (so that bext, not the library, refuses a stream over it, as a stream error)."""
    limits = H2Limits(max_concurrent_streams=9, initial_window_size=128 * 1024)
    frames = _frames(new_engine_of(engine, limits).data_to_send())
    settings = frames[0]
    assert isinstance(settings, SettingsFrame) and "ACK" not in settings.flags
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 9
    assert settings.settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 128 * 1024
    assert settings.settings[SettingsFrame.ENABLE_PUSH] == 0
    assert settings.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 5000
    (update,) = frames[1:]
    assert isinstance(update, WindowUpdateFrame) and update.stream_id == 0
    assert update.window_increment == limits.connection_window - 65535


def new_engine_of(engine: type, limits: H2Limits) -> h2_engine.H2Engine:
    made: h2_engine.H2Engine = engine(limits, 5000)
    return made


def test_new_engine_follows_the_limits() -> None:
    assert new_engine(H2Limits(engine="h2"), 5000).name == "h2"
    assert new_engine(H2Limits(engine="nghttp2"), 5000).name == "nghttp2"


def test_nghttp2_death_still_says_goaway() -> None:
    """Past a resource limit nghttp2's session is dead and writes nothing, not even its
    GOAWAY: the adapter writes one itself, ENHANCE_YOUR_CALM."""
    engine = NgH2Engine(H2Limits(), 100)  # hard header list limit: 200 bytes
    engine.data_to_send()
    block = Encoder().encode(
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x", b"v" * 300)]
    )
    headers = HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"])
    with pytest.raises(h2_engine.EngineFailed):
        engine.receive_data(PREFACE + SettingsFrame(0).serialize() + headers.serialize())
    frames = _frames(engine.data_to_send())
    assert frames and isinstance(frames[-1], GoAwayFrame)
    assert frames[-1].error_code == 0xB  # ENHANCE_YOUR_CALM
    assert engine.data_to_send() == b""  # once
    assert engine.receive_data(b"more") == []


def _client_flight() -> tuple[bytes, bytes]:
    """A client's preface, then four streams: a body ending in an empty DATA frame, a
    padded body with trailers, a body-less request, and one cancelled at once."""
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    preface = client.data_to_send()
    fields = [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
    client.send_headers(1, fields)
    client.send_data(1, b"abc")
    client.send_data(1, b"", end_stream=True)
    client.send_headers(3, fields)
    client.send_data(3, b"defg", pad_length=10)
    client.send_headers(3, [(b"x-t", b"1")], end_stream=True)
    client.send_headers(5, fields, end_stream=True)
    client.send_headers(7, fields)
    client.reset_stream(7)
    return preface, client.data_to_send()


def _normalised(events: list[h2_engine.EngineEvent]) -> list[tuple[object, ...]]:
    """What bext acts on, in order. h2 also reports END_STREAM of a body-less request as a
    StreamEnded, which changes nothing for bext (the request said so already)."""
    out: list[tuple[object, ...]] = []
    ended_with_head: set[int] = set()
    for event in events:
        if isinstance(event, h2_engine.RequestReceived):
            if event.end_stream:
                ended_with_head.add(event.stream_id)
            out.append(("request", event.stream_id, list(event.headers), event.end_stream))
        elif isinstance(event, h2_engine.DataReceived):
            out.append(("data", event.stream_id, event.data))
        elif isinstance(event, h2_engine.StreamEnded):
            if event.stream_id not in ended_with_head:
                out.append(("ended", event.stream_id))
        elif isinstance(event, h2_engine.TrailersReceived):
            out.append(("trailers", event.stream_id, list(event.headers)))
        elif isinstance(event, h2_engine.StreamReset):
            out.append(("reset", event.stream_id, int(event.error_code), event.remote))
        else:
            out.append((type(event).__name__,))
    return out


def test_both_engines_report_the_same_events() -> None:
    preface, flight = _client_flight()
    seen = {}
    for engine in (H2LibEngine(H2Limits(), 8000), NgH2Engine(H2Limits(), 8000)):
        assert engine.receive_data(preface) == []  # the client's SETTINGS: nothing to do
        events = engine.receive_data(flight)
        seen[engine.name] = _normalised(events)
        padded = [e for e in events if isinstance(e, h2_engine.DataReceived) and e.data == b"defg"]
        # Padding is flow-controlled: h2 reports it for bext to acknowledge, nghttp2
        # acknowledges it itself.
        assert padded[0].flow_controlled_length == (15 if engine.name == "h2" else 4)
    assert seen["h2"] == seen["nghttp2"]
    assert ("reset", 7, 0, True) in seen["h2"] and ("trailers", 3, [(b"x-t", b"1")]) in seen["h2"]


def test_nghttp2_reports_the_streams_it_rejects_once() -> None:
    """A malformed request nghttp2 resets itself is a StreamRejected (counted like bext's
    own resets); a stream the client reset is not reported again when nghttp2 closes it."""
    engine = NgH2Engine(H2Limits(), 8000)
    preface, _ = _client_flight()
    engine.receive_data(preface)
    client = H2Client(
        H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
    )
    client.initiate_connection()
    client.data_to_send()
    good = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
    client.send_headers(1, [*good, (b"Upper", b"1")], end_stream=True)
    client.send_headers(3, good)
    client.reset_stream(3)
    events = engine.receive_data(client.data_to_send())
    rejected = [e for e in events if isinstance(e, h2_engine.StreamRejected)]
    assert [(e.stream_id, e.error_code) for e in rejected] == [(1, 1)]
    resets = [e for e in events if isinstance(e, h2_engine.StreamReset)]
    assert [(e.stream_id, e.remote) for e in resets] == [(3, True)]
    frames = _frames(engine.data_to_send())
    assert any(isinstance(f, RstStreamFrame) and f.stream_id == 1 for f in frames)


def test_a_large_response_head_goes_out_whole() -> None:
    """Response heads are not the client's to bound: nghttp2's 64 KiB default send limit
    is raised, so a big cookie jar goes out (in CONTINUATION frames) as on h2."""
    cookie = b"c=" + b"v" * 100_000

    def big(request: Request) -> Response:
        return Response(200, [(b"set-cookie", cookie)], b"ok")

    with serve_harness(big) as server, RawH2(server.port) as conn:
        conn.request(1)
        reply = conn.response(1)
        assert reply.status == 200 and reply.body == b"ok"
        assert dict(reply.headers)[b"set-cookie"] == cookie
