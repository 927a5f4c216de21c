"""h1_writer: response framing decided from status, length, version and keep-alive."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bext.protocol.events import ParserLimits
from bext.protocol.h1_writer import CONTINUE, LAST_CHUNK, chunk, response_head, status_line
from tests.protocol.h1support import ENGINES, feed_pieces, req

PREAMBLE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: bext\r\n"


def fields(head: bytes) -> list[tuple[bytes, bytes]]:
    assert head.endswith(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    return [tuple(line.split(b": ", 1)) for line in lines[1:]]  # type: ignore[misc]


def framing(head: bytes) -> tuple[bytes | None, bool, bytes | None]:
    """(Content-Length value, chunked?, Connection value) of a serialised head."""
    found = {name.lower(): value for name, value in fields(head)}
    assert sum(name.lower() == b"content-length" for name, _ in fields(head)) <= 1
    chunked = found.get(b"transfer-encoding") == b"chunked"
    return found.get(b"content-length"), chunked, found.get(b"connection")


def test_head_layout() -> None:
    head = response_head(
        200, [(b"Content-Type", b"text/plain"), (b"X-A", b"1")], PREAMBLE, 5, True, False
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\n"
        + PREAMBLE
        + b"Content-Type: text/plain\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("status", "length", "keep_alive", "http10", "expected"),
    [
        # HTTP/1.1: Content-Length when known, else chunked; Connection only to close.
        (200, 5, True, False, (b"5", False, None)),
        (200, 0, True, False, (b"0", False, None)),
        (200, None, True, False, (None, True, None)),
        (200, 5, False, False, (b"5", False, b"close")),
        (200, None, False, False, (None, True, b"close")),
        (404, 9, True, False, (b"9", False, None)),
        (500, None, True, False, (None, True, None)),
        # HTTP/1.0: never chunked; unknown length means close-delimited.
        (200, 5, True, True, (b"5", False, b"keep-alive")),
        (200, 5, False, True, (b"5", False, b"close")),
        (200, None, False, True, (None, False, b"close")),
        pytest.param(
            200,
            None,
            True,
            True,
            (None, False, b"close"),
            id="http10-unknown-length-must-close",
        ),
        # No content: 1xx, 204 and 304 carry no body framing.
        (101, None, True, False, (None, False, None)),
        (204, None, True, False, (None, False, None)),
        (204, None, False, False, (None, False, b"close")),
        (204, None, True, True, (None, False, b"keep-alive")),
        (304, None, True, False, (None, False, None)),
        (304, 120, True, False, (b"120", False, None)),  # 304 may state the selected length
        pytest.param(
            204,
            0,
            True,
            False,
            (None, False, None),
            id="204-never-content-length",
        ),
    ],
)
def test_framing_table(
    status: int,
    length: int | None,
    keep_alive: bool,
    http10: bool,
    expected: tuple[bytes | None, bool, bytes | None],
) -> None:
    head = response_head(status, [], PREAMBLE, length, keep_alive, http10)
    assert head.startswith(status_line(status) + PREAMBLE)
    assert framing(head) == expected


def test_status_lines() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(503) == b"HTTP/1.1 503 Service Unavailable\r\n"
    assert status_line(299) == b"HTTP/1.1 299 Unknown\r\n"
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_chunk() -> None:
    assert chunk(b"abc") == b"3\r\nabc\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert chunk(b"x" * 4096).startswith(b"1000\r\n")
    assert LAST_CHUNK == b"0\r\n\r\n"


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(parts=st.lists(st.binary(min_size=1, max_size=300), max_size=6))
def test_chunks_decode_in_both_engines(parts: list[bytes]) -> None:
    """What chunk() writes, a strict HTTP/1.1 chunked decoder reads back exactly."""
    wire = b"".join(chunk(p) for p in parts) + LAST_CHUNK
    data = req(b"POST / HTTP/1.1", (b"Host: a", b"Transfer-Encoding: chunked"), wire)
    for cls in ENGINES:
        outcome = feed_pieces(cls, [data], ParserLimits())
        assert outcome.ok
        assert [m.body for m in outcome.messages] == [b"".join(parts)]


@pytest.mark.parametrize(
    ("length", "keep_alive"), [(5, True), (None, True), (5, False), (None, False)]
)
def test_http11_client_reads_the_framing(length: int | None, keep_alive: bool) -> None:
    """An independent client (h11) finds the body and connection reuse we meant."""
    body = b"hello"
    head = response_head(200, [], PREAMBLE, length, keep_alive, False)
    wire = head + (body if length is not None else chunk(b"hel") + chunk(b"lo") + LAST_CHUNK)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    events: list[object] = []
    while not events or not isinstance(events[-1], h11.EndOfMessage):
        event = client.next_event()
        assert event is not h11.NEED_DATA, f"incomplete response after {events}"
        events.append(event)
    assert isinstance(events[0], h11.Response) and events[0].status_code == 200
    assert isinstance(events[-1], h11.EndOfMessage)
    assert b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data)) == body
    if keep_alive:
        assert client.their_state is h11.DONE
        client.start_next_cycle()  # the connection is reusable
    else:
        assert client.their_state is h11.MUST_CLOSE
