"""HTTP/2 connection lifecycle: h2c handover, graceful GOAWAY, idle and preface timeouts."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bext.http.message import Request, Response
from bext.protocol.h2_limits import H2Limits
from bext.worker.context import Timeouts
from tests.h2.h2client import NO_ERROR, PREFACE, REFUSED_STREAM, RawH2
from tests.h2.support import PKI, RecordingCounters
from tests.support.inproc import Harness, serve, serve_harness
from tests.support.rawhttp import RawConnection


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def connections(server: Harness) -> int:
    return server.call(lambda: len(server.ctx.connections))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_shutdown_sends_goaway_and_finishes_in_flight_streams(loop: str) -> None:
    started: list[bytes] = []

    async def slow(request: Request) -> Response:
        started.append(request.target)
        await asyncio.sleep(0.5)
        return Response(200, [], b"finished " + request.target)

    counters = RecordingCounters()
    with serve_harness(slow, loop=loop, counters=counters) as server, RawH2(server.port) as conn:
        conn.request(1, b"/one")
        conn.request(3, b"/two", method=b"POST", end_stream=False)  # its body still arrives
        wait_for(lambda: len(started) == 2)
        server.shutdown_connections()
        goaway = conn.wait_goaway()
        assert goaway.error_code == NO_ERROR and goaway.last_stream_id == 3
        conn.request(5, b"/late")  # opened after the GOAWAY: refused, safe to retry
        conn.data(3, b"body", end_stream=True)
        assert conn.response(5).reset == REFUSED_STREAM
        assert conn.response(1).body == b"finished /one"
        assert conn.response(3).body == b"finished /two"
        conn.wait_closed()
        wait_for(lambda: connections(server) == 0)
        assert started == [b"/one", b"/two"]
        # A connection accepted while draining is told at once.
        with RawH2(server.port) as late:
            late.request(1)
            assert late.wait_goaway().last_stream_id == 0
            late.wait_closed()
    assert counters.opened == counters.closed == 2


def test_shutdown_of_an_idle_connection_closes_it() -> None:
    with serve_harness(lambda r: Response(200, [], b"ok")) as server, RawH2(server.port) as conn:
        conn.request(1)
        conn.response(1)
        server.shutdown_connections()
        assert conn.wait_goaway().last_stream_id == 1
        conn.wait_closed()


def test_max_requests_per_connection_drains_it() -> None:
    with (
        serve_harness(lambda r: Response(200, [], b"ok"), max_keepalive_requests=3) as server,
        RawH2(server.port) as conn,
    ):
        for sid in (1, 3, 5):
            conn.request(sid)
        assert conn.wait_goaway().last_stream_id == 5
        for sid in (1, 3, 5):
            assert conn.response(sid).body == b"ok"
        conn.wait_closed()


def test_idle_connection_is_closed_after_keepalive_timeout() -> None:
    timeouts = Timeouts(keepalive=0.3)
    with serve(lambda r: Response(200, [], b"ok"), timeouts=timeouts) as port, RawH2(port) as conn:
        conn.request(1)
        conn.response(1)
        idle_from = time.monotonic()
        goaway = conn.wait_goaway()
        assert goaway.error_code == NO_ERROR and goaway.last_stream_id == 1
        assert 0.25 < time.monotonic() - idle_from < 2
        conn.wait_closed()


def test_pings_do_not_keep_an_idle_connection_open() -> None:
    timeouts = Timeouts(keepalive=0.4)
    with serve(lambda r: Response(200, [], b"ok"), timeouts=timeouts) as port, RawH2(port) as conn:
        conn.request(1)
        conn.response(1)
        for _ in range(20):
            conn.ping()
            time.sleep(0.05)
            if conn.goaway is not None:
                break
            conn.read_until(lambda: True)
        conn.wait_goaway(timeout=2)


def test_preface_and_first_request_timeout(pki: PKI) -> None:
    timeouts = Timeouts(header=0.3)
    with (
        serve(lambda r: Response(200, [], b"ok"), timeouts=timeouts) as port,
        RawH2(port) as conn,  # preface and SETTINGS, then nothing
    ):
        started = time.monotonic()
        assert conn.wait_goaway().last_stream_id == 0
        conn.wait_closed()
        assert time.monotonic() - started < 2.5
    with serve(
        lambda r: Response(200, [], b"ok"), timeouts=timeouts, ssl_context=pki.server_context()
    ) as port:
        raw = socket.create_connection(("127.0.0.1", port))
        tls = pki.client_context().wrap_socket(raw, server_hostname="localhost")
        assert tls.selected_alpn_protocol() == "h2"
        tls.settimeout(5)
        started = time.monotonic()
        data = b""
        while chunk := tls.recv(65536):  # TLS h2 without even a preface: closed
            data += chunk
        assert time.monotonic() - started < 2.5
        tls.close()


def test_h2c_preface_split_across_reads() -> None:
    counters = RecordingCounters()
    with serve_harness(lambda r: Response(200, [], b"ok"), counters=counters) as server:
        conn = RawH2(server.port, handshake=False)
        for byte in PREFACE:
            conn.send_raw(bytes([byte]))
            time.sleep(0.002)
        conn.send_raw(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
        conn.request(1)
        assert conn.response(1).body == b"ok"
        assert connections(server) == 1
        conn.close()
        wait_for(lambda: connections(server) == 0)
    # Counted once as a connection, and every byte once (not by both protocols).
    assert counters.opened == 1 and counters.closed == 1
    assert counters.bytes_in == conn.sent


def test_http11_unaffected_by_h2c_detection() -> None:
    def handler(request: Request) -> Response:
        return Response(200, [], f"{request.method} {request.http_version}".encode())

    with serve(handler) as port, RawConnection(port) as conn:
        conn.send(b"P")
        time.sleep(0.05)
        conn.send(b"OST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert conn.read_response().body == b"POST 1.1"
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().body == b"GET 1.1"
    with serve(handler) as port, RawConnection(port) as conn:
        conn.send(b"PRI * HTTP/1.1\r\nHost: t\r\n\r\n")  # a preface look-alike
        assert conn.read_response().status == 400


def test_h2c_can_be_turned_off() -> None:
    with (
        serve(lambda r: Response(200, [], b"ok"), h2=H2Limits(h2c=False)) as port,
        RawConnection(port) as conn,
    ):
        conn.send(PREFACE)
        response = conn.read_response()
        assert response.status >= 400  # HTTP/1.1 refuses it
