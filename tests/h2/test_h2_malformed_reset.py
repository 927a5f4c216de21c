"""Issue 14, item 10: malformed HTTP/2 requests are stream errors, unknown methods pass.

RFC 9113 §8.1.1: a malformed request (pseudo-header faults, uppercase or invalid field
names, connection-specific fields, bad trailers, ``host`` unlike ``:authority``) MUST be
treated as a stream error of type PROTOCOL_ERROR. bext answers 400 saying why (the RFC
allows a response first) and ends the stream with RST_STREAM(PROTOCOL_ERROR) instead of
END_STREAM; the connection carries on, and such resets count like a client's resets, so
a flood of them ends in GOAWAY (ENHANCE_YOUR_CALM) as a rapid reset does. A well-formed
request with a method bext does not know goes to the handler like any other.

On the nghttp2 engine, nghttp2 resets most malformed requests itself, without the 400
(:func:`tests.h2.support.assert_stream_error`); its resets count against the budget too.
"""

from __future__ import annotations

import time

import pytest
from hyperframe.frame import HeadersFrame

from bext.http.message import Request, Response
from bext.protocol.h2_limits import H2Limits
from tests.h2.h2client import ENHANCE_YOUR_CALM, RawH2
from tests.h2.support import assert_stream_error
from tests.support.inproc import serve

BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def describe(request: Request) -> Response:
    return Response(200, [], f"{request.method} {request.target.decode()}".encode())


async def echo(request: Request) -> Response:
    return Response(200, [], await request.body.read_all(1 << 20))


MALFORMED = {
    "uppercase-name": [*BASE, (b"X-Upper", b"1")],
    "name-with-space": [*BASE, (b"x y", b"1")],
    "missing-path": [f for f in BASE if f[0] != b":path"],
    "missing-method": [f for f in BASE if f[0] != b":method"],
    "empty-path": [(b":path", b"") if f[0] == b":path" else f for f in BASE],
    "pseudo-after-regular": [*BASE[:3], (b"x", b"1"), BASE[3]],
    "repeated-pseudo": [BASE[0], *BASE],
    "unknown-pseudo": [*BASE, (b":status", b"200")],
    "connection-header": [*BASE, (b"connection", b"close")],
    "te-gzip": [*BASE, (b"te", b"gzip")],
    "host-differs": [*BASE, (b"host", b"other")],
    "value-padded": [*BASE, (b"x", b" v")],
    "method-not-a-token": [(b":method", b"G@T"), *BASE[1:]],
}

NGHTTP2_LETS_THROUGH = {"host-differs"}
"""Malformed requests nghttp2 passes on, so that bext answers them 400 on both engines."""


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_request_is_a_stream_error(case: str, h2_engine_name: str) -> None:
    with serve(describe) as port, RawH2(port) as conn:
        conn.send(conn.headers_frame(1, MALFORMED[case]))
        conn.read_until(lambda: conn.reply(1).reset is not None)
        reply = conn.reply(1)
        assert_stream_error(reply, h2_engine_name, bext_checks=case in NGHTTP2_LETS_THROUGH)
        conn.request(3, b"/next")
        assert conn.response(3).status == 200  # the connection carries on
        assert conn.goaway is None


def test_malformed_trailers_reset_the_stream(h2_engine_name: str) -> None:
    with serve(echo) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"POST", body=b"x", end_stream=False)
        time.sleep(0.1)  # the handler is reading the body when the trailers arrive
        conn.send(conn.headers_frame(1, [(b":path", b"/nope")]))
        conn.read_until(lambda: conn.reply(1).reset is not None)
        assert_stream_error(conn.reply(1), h2_engine_name)
        conn.request(3, b"/", method=b"POST", body=b"fine")
        assert conn.response(3).body == b"fine"


def test_malformed_request_with_a_body_coming(h2_engine_name: str) -> None:
    with serve(echo) as port, RawH2(port) as conn:
        conn.send(conn.headers_frame(1, [*BASE, (b"Upper", b"1")], end_stream=False))
        conn.read_until(lambda: conn.reply(1).reset is not None)
        assert_stream_error(conn.reply(1), h2_engine_name)
        conn.data(1, b"late body", end_stream=True)  # after our reset: ignored
        conn.request(3)
        assert conn.response(3).status == 200 and conn.goaway is None


def test_a_flood_of_malformed_requests_ends_the_connection() -> None:
    """Resets bext sends count like the client's own (cf. "MadeYouReset")."""
    with serve(describe, h2=H2Limits(max_resets=20)) as port, RawH2(port) as conn:
        block = conn.header_block([*BASE, (b"Bad", b"1")])
        conn.send(
            *(
                HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"])
                for sid in range(1, 80, 2)
            )
        )
        assert conn.wait_goaway().error_code == ENHANCE_YOUR_CALM


@pytest.mark.parametrize("method", [b"FOO", b"SOURCE", b"BREW", b"X_Y.Z"])
def test_unknown_methods_reach_the_handler(method: bytes) -> None:
    with serve(describe) as port, RawH2(port) as conn:
        conn.request(1, b"/m", method=method)
        reply = conn.response(1)
        assert reply.status == 200 and reply.body == method + b" /m"


@pytest.mark.parametrize(("method", "status"), [(b"get", 400), (b"PRI", 400)])
def test_methods_bext_refuses_are_answered(method: bytes, status: int) -> None:
    """Well-formed (a token), but not served: a response, not a stream error."""
    with serve(describe) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=method)
        reply = conn.response(1)
        assert reply.status == status
