"""``body_min_rate`` over HTTP/3: a trickling upload gets 408 on its stream."""

from __future__ import annotations

import asyncio
import time

import pytest

from bext.http.message import Request, Response
from bext.worker import h3_connection
from bext.worker.context import Timeouts
from tests.support.h3client import h3_connect, run
from tests.support.inproc_h3 import H3PKI, serve_h3


async def read_all(request: Request) -> Response:
    body = await request.body.read_all(1 << 20)
    return Response(200, [], b"%d" % len(body))


def test_trickling_upload_gets_408(pki: H3PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h3_connection, "BODY_RATE_WINDOW", 1.0)

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca) as client:
            stream = client.open("PUT", "/", end_stream=False)
            started = time.monotonic()
            pending = asyncio.ensure_future(client.response(stream))
            for _ in range(20):  # 5 bytes/s
                if pending.done():
                    break
                client.send(stream, b"x")
                await asyncio.wait([pending], timeout=0.2)
            response = await asyncio.wait_for(pending, 5)
            assert response.status == 408 and b"too slow" in response.body
            assert time.monotonic() - started < 4
            fine = await client.request("PUT", "/", body=b"z" * 3000)
            assert fine.status == 200 and fine.body == b"3000"

    timeouts = Timeouts(body=30, body_min_rate=1000)
    with serve_h3(read_all, pki, timeouts=timeouts) as server:
        run(main(server.port))
