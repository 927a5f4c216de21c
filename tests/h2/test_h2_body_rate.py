"""``body_min_rate`` over HTTP/2: a trickling upload is answered 408 on its stream (the
connection lives on); one at a decent rate is not cut off."""

from __future__ import annotations

import contextlib
import time

import pytest

from bext.http.message import Request, Response
from bext.worker import h2_connection
from bext.worker.context import Timeouts
from tests.h2.h2client import RawH2
from tests.support.inproc import serve


async def read_all(request: Request) -> Response:
    body = await request.body.read_all(1 << 20)
    return Response(200, [], b"%d" % len(body))


def test_trickling_upload_gets_408_on_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2_connection, "BODY_RATE_WINDOW", 1.0)
    timeouts = Timeouts(body=30, body_min_rate=1000)
    with serve(read_all, timeouts=timeouts) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"PUT", end_stream=False)
        started = time.monotonic()
        for _ in range(20):  # 5 bytes/s, each piece well within body_timeout
            conn.data(1, b"x")
            with contextlib.suppress(TimeoutError):
                conn.read_until(lambda: bool(conn.reply(1).headers), timeout=0.2)
            if conn.reply(1).headers:
                break
        assert conn.response(1).status == 408
        assert time.monotonic() - started < 4
        conn.request(3)  # the connection itself is fine
        assert conn.response(3).status == 404 or conn.response(3).status == 200


def test_upload_at_a_decent_rate_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2_connection, "BODY_RATE_WINDOW", 0.5)
    timeouts = Timeouts(body=30, body_min_rate=1000)
    with serve(read_all, timeouts=timeouts) as port, RawH2(port) as conn:
        conn.request(1, b"/", method=b"PUT", end_stream=False)
        for _ in range(15):  # 200 bytes every 0.1 s: 2 KB/s for 1.5 s
            conn.data(1, b"y" * 200)
            time.sleep(0.1)
        conn.data(1, b"", end_stream=True)
        reply = conn.response(1)
        assert reply.status == 200 and reply.body == b"3000"
