"""The outbox: held writes go out at the end of the loop's turn, for an HTTP/1.1 client
connection and an upstream connection alike, never overtaking or outliving what follows
them (another write, a close, an abort)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

from bext.config.load import parse_config
from bext.observe.accesslog import AccessLog
from bext.proxy.connection import UpstreamConnection
from bext.proxy.spill import SpillBuffer
from bext.runtime.outbox import HOLD_LIMIT, Outbox, outbox_for
from bext.shm.counters import NullCounters
from bext.worker import main as worker_main
from bext.worker.h1_connection import H1Connection
from bext.worker.h2_connection import H2Connection
from bext.worker.pipeline import Pipeline


class Recording:
    """A transport that records writes and closes, in order, in ``events``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.closed = False
        self.closing = False  # closed by the loop after a FIN: it sends what it has, then goes

    def get_extra_info(self, name: str, default: object = None) -> object:
        extra = {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80)}
        return extra.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.closed = True
        self.events.append(("close", b""))

    def abort(self) -> None:
        self.closed = True
        self.events.append(("abort", b""))

    def write_eof(self) -> None:
        self.events.append(("eof", b""))

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, *args: object) -> None: ...

    def is_closing(self) -> bool:
        return self.closed or self.closing

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def written(self) -> bytes:
        return b"".join(data for kind, data in self.events if kind == "write")


# -- the outbox itself --------------------------------------------------------------------


class Holder:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def send_held(self) -> None:
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("broken connection")


def test_holders_are_sent_once_at_the_end_of_the_turn_in_order() -> None:
    async def main() -> tuple[list[str], list[str], list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        log: list[str] = []
        outbox = Outbox(loop)
        outbox.hold(Holder("a", log, fail=True))
        outbox.hold(Holder("b", log))
        during = list(log)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return during, log, reported

    during, log, reported = asyncio.run(main())
    assert during == []  # nothing before the turn ends
    assert log == ["a", "b"]  # once each, in order; a failing one does not stop the rest
    assert len(reported) == 1


def test_one_outbox_per_loop() -> None:
    async def mine() -> Outbox:
        loop = asyncio.get_running_loop()
        assert outbox_for(loop) is outbox_for(loop)
        return outbox_for(loop)

    assert asyncio.run(mine()) is not asyncio.run(mine())


# -- an HTTP/1.1 client connection ----------------------------------------------------------


def connection(tmp_path: Path, body: str = "hello") -> tuple[H1Connection, Recording, Pipeline]:
    text = f"""
[log]
access = "off"
[compression]
enabled = false
[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "{body}", content_type = "text/plain" }}
"""
    config = parse_config(tomllib.loads(text), base_dir=tmp_path)
    pipeline = Pipeline(config)
    pipeline.bind_counters(NullCounters())
    ctx = worker_main.build_context(config, pipeline, AccessLog("off"), NullCounters())
    conn = H1Connection(ctx)
    transport = Recording()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, pipeline


GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"


def test_pipelined_responses_go_out_in_one_write_at_the_end_of_the_turn(tmp_path: Path) -> None:
    async def main() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        conn, transport, pipeline = connection(tmp_path)
        conn.data_received(b"".join(GET % n for n in range(3)))
        during = list(transport.events)
        await asyncio.sleep(0)
        pipeline.close()
        return during, transport.events

    during, events = asyncio.run(main())
    assert during == []
    assert [kind for kind, _ in events] == ["write"]
    assert events[0][1].count(b"HTTP/1.1 200 OK") == 3 and events[0][1].endswith(b"hello")


def test_held_responses_go_before_the_close(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, bytes]]:
        conn, transport, pipeline = connection(tmp_path)
        conn.data_received(GET % 1 + b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await asyncio.sleep(0)
        pipeline.close()
        return transport.events

    events = asyncio.run(main())
    assert [kind for kind, _ in events] == ["write", "close"]
    assert events[0][1].count(b"HTTP/1.1 200 OK") == 2


def test_a_connection_holds_at_most_the_limit(tmp_path: Path) -> None:
    size = HOLD_LIMIT // 3 + 1  # three do not fit: the third one writes at once

    async def main() -> list[tuple[str, bytes]]:
        conn, transport, pipeline = connection(tmp_path, "x" * size)
        conn.data_received(b"".join(GET % n for n in range(5)))
        held = conn._held.data
        assert held is not None and len(held) <= HOLD_LIMIT  # the rest was written already
        await asyncio.sleep(0)
        pipeline.close()
        return transport.events

    events = asyncio.run(main())
    written = b"".join(data for _, data in events)
    assert written.count(b"HTTP/1.1 200 OK") == 5 and len(events) > 1
    assert written.count(b"x" * size) == 5  # whole, in order: no response cut by another


def test_a_client_that_half_closes_after_its_request_still_gets_the_response(
    tmp_path: Path,
) -> None:
    # The request and the client's FIN in one turn: eof_received lets the transport close
    # (asyncio closes it when eof_received returns a false value), and what is held must
    # be written before that.
    async def main() -> list[tuple[str, bytes]]:
        conn, transport, pipeline = connection(tmp_path)
        conn.data_received(GET % 1)
        if not conn.eof_received():
            transport.close()
        await asyncio.sleep(0)
        pipeline.close()
        return transport.events

    events = asyncio.run(main())
    assert [kind for kind, _ in events] == ["write", "close"]
    assert events[0][1].startswith(b"HTTP/1.1 200 OK")


def test_a_client_gone_before_the_turn_ends_gets_nothing(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, bytes]]:
        conn, transport, pipeline = connection(tmp_path)
        conn.data_received(GET % 1)
        conn.connection_lost(None)
        await asyncio.sleep(0)
        pipeline.close()
        return transport.events

    assert asyncio.run(main()) == []


# -- an upstream connection -----------------------------------------------------------------


def upstream() -> tuple[UpstreamConnection, Recording, SpillBuffer]:
    conn = UpstreamConnection(1.0, lambda conn: None)
    transport = Recording()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, SpillBuffer(1 << 16, 0, None)


def test_a_request_head_goes_at_the_end_of_the_turn_and_before_its_body() -> None:
    async def main() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        conn, transport, buffer = upstream()
        conn.begin(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n", False, buffer, True)
        during = list(transport.events)
        conn.write(b"body")  # a body sender in the same turn: the head goes first
        await asyncio.sleep(0)
        conn.abort()
        return during, transport.events

    during, events = asyncio.run(main())
    assert during == []
    assert [data for _, data in events[:2]] == [b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n",
                                                 b"body"]  # fmt: skip


def test_an_aborted_request_never_goes_out() -> None:
    async def main() -> list[tuple[str, bytes]]:
        conn, transport, buffer = upstream()
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", False, buffer)
        conn.abort()  # the client went away in the same turn
        await asyncio.sleep(0)
        return transport.events

    assert asyncio.run(main()) == [("abort", b"")]


# -- an HTTP/2 connection -------------------------------------------------------------------


def h2_exchange(tmp_path: Path, streams: int, then: str) -> tuple[list[str], list[Any]]:
    """An HTTP/2 client (the h2 library) sends ``streams`` GETs in one read; ``then`` is
    what happens in the same turn: "nothing", "drain" (a graceful stop: GOAWAY) or "eof"
    (the client's FIN). Returns what the transport saw (kinds) and the client's events."""
    import h2.config
    import h2.connection
    import h2.events

    async def main() -> tuple[list[str], list[Any]]:
        conn, transport, pipeline = connection(tmp_path)
        transport.events.clear()
        server = H2Connection(conn._ctx)
        server.connection_made(transport)  # type: ignore[arg-type]
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        for index in range(streams):
            client.send_headers(
                2 * index + 1,
                [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")],
                end_stream=True,
            )
        server.data_received(client.data_to_send())
        assert transport.events == [], "nothing written before the turn ends"
        if then == "drain":
            server.shutdown()
        elif then == "eof" and not server.eof_received():
            transport.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        events = client.receive_data(transport.written())
        pipeline.close()
        return [kind for kind, _ in transport.events], events

    return asyncio.run(main())


def test_http2_frames_of_one_turn_go_out_in_one_write(tmp_path: Path) -> None:
    import h2.events

    kinds, events = h2_exchange(tmp_path, 3, "nothing")
    assert kinds == ["write"]  # SETTINGS, the ACK and three responses together
    bodies = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
    assert bodies == [b"hello"] * 3


def test_http2_held_frames_go_before_the_goaway_and_the_close(tmp_path: Path) -> None:
    import h2.events

    kinds, events = h2_exchange(tmp_path, 1, "drain")
    assert kinds[:2] == ["write", "write"]  # the held frames, then the GOAWAY after them
    assert [type(e).__name__ for e in events if not isinstance(e, h2.events.SettingsAcknowledged)
            ][-1] == "ConnectionTerminated"  # fmt: skip
    assert any(isinstance(e, h2.events.DataReceived) and e.data == b"hello" for e in events)
    kinds, events = h2_exchange(tmp_path, 1, "eof")
    assert kinds == ["write", "close"]
    assert any(isinstance(e, h2.events.DataReceived) and e.data == b"hello" for e in events)


def test_a_closing_transport_gets_its_bytes_at_once(tmp_path: Path) -> None:
    # After the client's FIN the loop closes the transport, which still sends what it is
    # given until its buffer is empty, then reports the connection lost: bytes held for
    # the end of the turn would be dropped. (Found with a real h2c client that sent a FIN
    # after its request and read a 1 MB response slowly: the last 29 KiB never came.)
    import h2.config
    import h2.connection
    import h2.events

    async def main() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[Any]]:
        conn, transport, pipeline = connection(tmp_path)
        transport.closing = True
        conn.data_received(GET % 1)
        h1_events = list(transport.events)
        server = H2Connection(conn._ctx)
        h2_transport = Recording()
        server.connection_made(h2_transport)  # type: ignore[arg-type]
        h2_transport.closing = True
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        client.send_headers(
            1,
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")],
            end_stream=True,
        )
        server.data_received(client.data_to_send())
        h2_events = list(h2_transport.events)
        answered = client.receive_data(h2_transport.written())
        pipeline.close()
        return h1_events, h2_events, answered

    h1_events, h2_events, answered = asyncio.run(main())
    assert [kind for kind, _ in h1_events] == ["write"]  # before any turn ended
    assert h1_events[0][1].startswith(b"HTTP/1.1 200 OK")
    assert [kind for kind, _ in h2_events][-1:] == ["write"]
    assert any(isinstance(e, h2.events.StreamEnded) for e in answered)
