"""The exchange without sockets: a recording sender stands in for HTTP/1.1, /2 and /3.

Each test drives :func:`bext.worker.exchange.start` on a fresh event loop and checks what
the exchange asked the sender to do, and what it logged through ``ctx.record``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bext.http.body import EMPTY_BODY, BodyError
from bext.http.deferred import Deferred
from bext.http.filebody import FileBody
from bext.http.message import PendingResponse, Request, Response
from bext.observe.accesslog import AccessLog
from bext.protocol.events import ParserLimits
from bext.protocol.h1_ref import H11Parser
from bext.worker.context import Timeouts, WorkerContext
from bext.worker.exchange import Exchange, start
from tests.support.inproc import FnHandler

Handler = Callable[[Request], Response | Awaitable[Response]]


class RecordingContext(WorkerContext):
    """A context whose logging phase writes into ``recorded``."""

    recorded: list[tuple[int, int]]

    def record(self, request: Request, status: int, sent: int, now: float) -> None:
        self.recorded.append((status, sent))


def context(fn: Handler) -> RecordingContext:
    ctx = RecordingContext(
        handler=FnHandler(fn),
        parser_factory=H11Parser,
        limits=ParserLimits(),
        timeouts=Timeouts(),
        access_log=AccessLog("off"),
    )
    ctx.recorded = []
    return ctx


class FakeSender:
    """Records every call; finishes (records) like a real sender does."""

    def __init__(self, ctx: RecordingContext, whole_limit: int = 1 << 62,
                 sends_files: bool = False, can_switch: bool = False) -> None:  # fmt: skip
        self.ctx = ctx
        self.whole_limit = whole_limit
        self.sends_files = sends_files
        self.can_switch = can_switch
        self.calls: list[tuple[Any, ...]] = []
        self.data: list[bytes] = []
        self.is_gone = False
        self.reused = True

    @property
    def gone(self) -> bool:
        return self.is_gone

    def send_whole(self, request: Request, response: Response, with_body: bool) -> None:
        body = response.body if with_body else b""
        self.calls.append(("whole", response.status, body))
        self.ctx.record(request, response.status, len(body), 0.0)

    def send_head(self, request: Request, response: Response, length: int | None,
                  with_body: bool) -> None:  # fmt: skip
        self.calls.append(("head", response.status, length, with_body))
        if not with_body:
            self.ctx.record(request, response.status, 0, 0.0)

    async def ready(self) -> None:
        if self.is_gone:
            raise ConnectionResetError("gone")

    def send_data(self, data: bytes) -> None:
        self.data.append(data)

    def send_end(self, request: Request, response: Response, sent: int) -> None:
        self.calls.append(("end", sent))
        self.ctx.record(request, response.status, sent, 0.0)

    async def send_file(self, request: Request, response: Response, file: FileBody) -> None:
        self.calls.append(("file", file.count))
        file.close()
        self.ctx.record(request, response.status, file.count, 0.0)

    def break_off(self) -> None:
        self.calls.append(("break",))

    def refuse_reuse(self) -> None:
        self.reused = False

    def switch_protocols(self, request: Request, response: Response) -> bool:
        self.calls.append(("switch", self.can_switch))
        return self.can_switch


def request(method: str = "GET") -> Request:
    return Request(method, b"/x", [], "1.1", "http", "127.0.0.1", 1, 80, EMPTY_BODY, 0.0)


def drive(
    fn: Handler, method: str = "GET", **sender_options: Any
) -> tuple[FakeSender, Exchange | None]:
    """Start one exchange and run the loop until its task (if any) is done."""
    ctx = context(fn)
    sender = FakeSender(ctx, **sender_options)

    async def main() -> Exchange | None:
        exchange = start(ctx, request(method), sender)
        if exchange is not None and exchange.task is not None:
            await exchange.task
        return exchange

    return sender, asyncio.run(main())


async def chunks(*parts: bytes, fail: Exception | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail is not None:
        raise fail


class Closing:
    """A stream that remembers being closed and whether it was read."""

    def __init__(self) -> None:
        self.closed = 0
        self.read = False

    def __aiter__(self) -> Closing:
        return self

    async def __anext__(self) -> bytes:
        self.read = True
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed += 1


def test_small_answer_is_sent_at_once_without_a_task() -> None:
    sender, exchange = drive(lambda r: Response(200, [], b"hi"))
    assert exchange is None
    assert sender.calls == [("whole", 200, b"hi")]
    assert sender.ctx.recorded == [(200, 2)]


def test_handler_exception_is_a_500() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    sender, _ = drive(broken)
    assert sender.calls[0][:2] == ("whole", 500)


def test_async_handler_exception_is_a_500_and_body_error_a_400_without_reuse() -> None:
    async def fails(request: Request) -> Response:
        raise RuntimeError("boom")

    sender, exchange = drive(fails)
    assert exchange is not None and sender.calls[0][:2] == ("whole", 500) and sender.reused

    async def body_broke(request: Request) -> Response:
        raise BodyError("client went away")

    sender, _ = drive(body_broke)
    assert sender.calls[0][:2] == ("whole", 400) and not sender.reused


def test_head_and_204_304_have_no_body() -> None:
    sender, _ = drive(lambda r: Response(200, [], b"hello"), method="HEAD")
    assert sender.calls == [("whole", 200, b"")]
    sender, _ = drive(lambda r: Response(304, [], b"ignored"))
    assert sender.calls == [("whole", 304, b"")]


def test_head_closes_a_stream_once_without_reading_it() -> None:
    stream = Closing()
    sender, _ = drive(lambda r: Response(200, [], stream=stream, content_length=10), "HEAD")
    assert sender.calls == [("head", 200, 10, False)]
    assert stream.closed == 1 and not stream.read
    assert sender.ctx.recorded == [(200, 0)]


def test_stream_is_sent_in_chunks_and_ended() -> None:
    sender, _ = drive(lambda r: Response(200, [], stream=chunks(b"ab", b"", b"cd")))
    assert sender.calls == [("head", 200, None, True), ("end", 4)]
    assert sender.data == [b"ab", b"cd"]
    assert sender.ctx.recorded == [(200, 4)]


def test_stream_shorter_than_its_length_is_broken_off_and_logged() -> None:
    sender, _ = drive(lambda r: Response(200, [], stream=chunks(b"abc"), content_length=10))
    assert sender.calls == [("head", 200, 10, True), ("break",)]
    assert sender.ctx.recorded == [(200, 3)]


def test_stream_that_fails_half_way_is_broken_off() -> None:
    source = chunks(b"abc", fail=ValueError("upstream broke"))
    sender, _ = drive(lambda r: Response(200, [], stream=source))
    assert sender.calls[-1] == ("break",) and sender.data == [b"abc"]
    assert sender.ctx.recorded == [(200, 3)]


def test_large_body_is_streamed_in_slices_where_the_sender_limits_it() -> None:
    body = os.urandom(200_000)
    sender, _ = drive(lambda r: Response(200, [], body), whole_limit=1000)
    assert sender.calls == [("head", 200, len(body), True), ("end", len(body))]
    assert b"".join(sender.data) == body and max(map(len, sender.data)) <= 64 * 1024


def upgrade_handler(closed: list[bool]) -> Handler:
    """An upstream that switched protocols: a 101 with a tunnel that notes its closing."""

    class FakeTunnel:
        def close(self) -> None:
            closed.append(True)

    async def upgrade(request: Request) -> Response:
        return Response(101, [], tunnel=FakeTunnel())  # type: ignore[arg-type]

    return upgrade


def test_tunnel_where_switching_is_impossible_is_a_502() -> None:
    closed: list[bool] = []
    upgrade = upgrade_handler(closed)

    sender, _ = drive(upgrade)
    assert sender.calls[0] == ("switch", False)
    assert sender.calls[1][:2] == ("whole", 502) and closed


def test_tunnel_is_kept_when_the_sender_switches() -> None:
    closed: list[bool] = []
    upgrade = upgrade_handler(closed)

    sender, _ = drive(upgrade, can_switch=True)
    assert sender.calls == [("switch", True)] and not closed


def test_final_1xx_without_tunnel_is_a_502() -> None:
    sender, _ = drive(lambda r: Response(103, [], b""))
    assert sender.calls[0][:2] == ("whole", 502)


def test_file_goes_to_send_file_where_the_sender_can_else_in_chunks(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")

    def file_response(request: Request) -> Response:
        return Response(200, [], file=FileBody(os.open(path, os.O_RDONLY), 2, 5))

    sender, _ = drive(file_response, sends_files=True)
    assert sender.calls == [("file", 5)]
    sender, _ = drive(file_response)
    assert sender.calls == [("head", 200, 5, True), ("end", 5)] and sender.data == [b"23456"]


def test_gone_before_the_answer_releases_it_and_sends_nothing(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    files: list[FileBody] = []
    ctx = context(lambda r: Response(200))
    sender = FakeSender(ctx)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0)
        sender.is_gone = True
        files.append(FileBody(os.open(path, os.O_RDONLY), 0, 10))
        return Response(200, [], file=files[0])

    ctx.handler = FnHandler(slow)

    async def main() -> None:
        exchange = start(ctx, request(), sender)
        assert exchange is not None and exchange.task is not None
        await exchange.task

    asyncio.run(main())
    assert sender.calls == [] and files[0].fd == -1 and ctx.recorded == []


def test_cancel_before_the_task_starts_releases_the_result(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    stream = Closing()

    async def main() -> None:
        ctx = context(lambda r: Response(200, [], stream=stream))
        sender = FakeSender(ctx)
        exchange = start(ctx, request(), sender)
        assert exchange is not None
        exchange.cancel()  # the stream was reset in the same loop turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert exchange.task is not None and exchange.task.cancelled()
        assert sender.calls == []

    asyncio.run(main())
    assert stream.closed == 1 and not stream.read


def test_cancel_before_start_closes_a_pending_coroutine() -> None:
    started: list[bool] = []

    async def never(request: Request) -> Response:
        started.append(True)
        return Response(200)

    async def main() -> None:
        ctx = context(never)
        exchange = start(ctx, request(), FakeSender(ctx))
        assert exchange is not None
        exchange.cancel()
        await asyncio.sleep(0)

    asyncio.run(main())  # a coroutine never awaited would warn; closing it does not
    assert started == []


def test_a_deferred_answer_is_sent_in_the_call_that_settles_it_without_a_task() -> None:
    # The proxy's warm-connection path: the upstream connection's read settles the
    # deferred, and the response goes to the sender in that same call (no loop turn).
    answers: list[Deferred[Response]] = []

    def later(request: Request) -> Deferred[Response]:
        answers.append(Deferred())
        return answers[0]

    async def main() -> tuple[FakeSender, Exchange | None]:
        ctx = context(later)
        sender = FakeSender(ctx)
        exchange = start(ctx, request(), sender)
        assert sender.calls == []
        answers[0].set_result(Response(200, [], b"late"))
        assert sender.calls == [("whole", 200, b"late")]  # before any loop turn
        return sender, exchange

    sender, exchange = asyncio.run(main())
    assert exchange is not None and exchange.task is None
    assert sender.ctx.recorded == [(200, 4)]


def test_a_deferred_answer_goes_through_the_response_phases() -> None:
    answer: Deferred[Response] = Deferred()

    def phase(request: Request, response: Response) -> Response:
        return Response(response.status, response.headers, response.body + b" +phase")

    def pending(request: Request) -> PendingResponse:
        return PendingResponse(request, answer, [phase])

    async def main() -> FakeSender:
        ctx = context(pending)
        sender = FakeSender(ctx)
        start(ctx, request(), sender)
        answer.set_result(Response(200, [], b"ok"))
        return sender

    sender = asyncio.run(main())
    assert sender.calls == [("whole", 200, b"ok +phase")]


def test_a_deferred_that_fails_is_a_500() -> None:
    answer: Deferred[Response] = Deferred()

    async def main() -> FakeSender:
        ctx = context(lambda r: answer)
        sender = FakeSender(ctx)
        start(ctx, request(), sender)
        answer.set_exception(RuntimeError("upstream code broke"))
        return sender

    sender = asyncio.run(main())
    assert sender.calls[0][:2] == ("whole", 500)


def test_cancelling_the_exchange_cancels_a_deferred_answer_and_stops_its_producer() -> None:
    stopped: list[str] = []
    answer: Deferred[Response] = Deferred(lambda: stopped.append("abort upstream"))

    async def main() -> FakeSender:
        ctx = context(lambda r: answer)
        sender = FakeSender(ctx)
        exchange = start(ctx, request(), sender)
        assert exchange is not None
        exchange.cancel()  # the client went away
        assert stopped == ["abort upstream"]  # at once, not a loop turn later
        return sender

    sender = asyncio.run(main())
    assert answer.cancelled() and sender.calls == [] and sender.ctx.recorded == []


def test_a_streamed_deferred_answer_is_released_if_cancelled_before_its_task_starts() -> None:
    # The upstream read settles the deferred with a streamed response (a task will send
    # it); the client's connection_lost, already queued, cancels the exchange before that
    # task's first step. A coroutine that never started never runs its finally: the
    # exchange must release the response itself.
    stream = Closing()
    answer: Deferred[Response] = Deferred()

    async def main() -> FakeSender:
        ctx = context(lambda r: answer)
        sender = FakeSender(ctx)
        exchange = start(ctx, request(), sender)
        assert exchange is not None
        answer.set_result(Response(200, [], stream=stream))
        assert exchange.task is not None
        exchange.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        return sender

    sender = asyncio.run(main())
    assert sender.calls == [] and stream.closed == 1 and not stream.read
