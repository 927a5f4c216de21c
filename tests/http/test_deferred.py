"""Deferred: a future's contract for one consumer, without the loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bext.http.deferred import Deferred


def test_the_consumer_runs_in_the_call_that_settles() -> None:
    seen: list[int] = []
    answer: Deferred[int] = Deferred()
    answer.then(lambda done: seen.append(done.result()))
    assert seen == [] and not answer.done()
    answer.set_result(7)
    assert seen == [7]  # no loop at all: it ran in set_result
    assert answer.done() and not answer.cancelled() and answer.exception() is None


def test_a_consumer_added_after_the_value_runs_at_once() -> None:
    answer: Deferred[str] = Deferred()
    answer.set_result("x")
    seen: list[str] = []
    answer.then(lambda done: seen.append(done.result()))
    assert seen == ["x"]


def test_a_failure_reaches_the_consumer_and_result_raises_it() -> None:
    answer: Deferred[int] = Deferred()
    errors: list[BaseException | None] = []
    answer.then(lambda done: errors.append(done.exception()))
    boom = ValueError("boom")
    answer.set_exception(boom)
    assert errors == [boom]
    with pytest.raises(ValueError, match="boom"):
        answer.result()


def test_cancel_runs_on_cancel_once_and_tells_the_consumer() -> None:
    stopped: list[str] = []
    answer: Deferred[int] = Deferred(lambda: stopped.append("stop"))
    told: list[bool] = []
    answer.then(lambda done: told.append(done.cancelled()))
    assert answer.cancel() is True
    assert answer.cancel() is False
    assert stopped == ["stop"] and told == [True]
    with pytest.raises(asyncio.CancelledError):
        answer.result()
    with pytest.raises(asyncio.CancelledError):
        answer.exception()


def test_a_settled_deferred_cannot_be_cancelled_or_settled_again() -> None:
    stopped: list[str] = []
    answer: Deferred[int] = Deferred(lambda: stopped.append("stop"))
    answer.set_result(1)
    assert answer.cancel() is False and stopped == []
    with pytest.raises(asyncio.InvalidStateError):
        answer.set_result(2)
    with pytest.raises(asyncio.InvalidStateError):
        answer.set_exception(ValueError())
    cancelled: Deferred[int] = Deferred()
    cancelled.cancel()
    with pytest.raises(asyncio.InvalidStateError):
        cancelled.set_result(1)


def test_pending_result_and_a_second_consumer_are_refused() -> None:
    answer: Deferred[int] = Deferred()
    with pytest.raises(asyncio.InvalidStateError):
        answer.result()
    with pytest.raises(asyncio.InvalidStateError):
        answer.exception()
    answer.then(lambda done: None)
    with pytest.raises(RuntimeError):
        answer.then(lambda done: None)


def test_a_consumer_error_goes_to_the_loop_not_to_the_producer() -> None:
    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        answer: Deferred[int] = Deferred()

        def consumer(done: Deferred[int]) -> None:
            raise RuntimeError("consumer broke")

        answer.then(consumer)
        answer.set_result(1)  # does not raise
        return reported

    reported = asyncio.run(main())
    assert len(reported) == 1
    assert str(reported[0]["exception"]) == "consumer broke"


def test_awaiting_gets_the_value_set_later_or_before() -> None:
    async def main() -> tuple[int, int]:
        later: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_later(0.01, later.set_result, 5)
        before: Deferred[int] = Deferred()
        before.set_result(6)
        return await later, await before

    assert asyncio.run(main()) == (5, 6)


def test_awaiting_a_failure_raises_it() -> None:
    async def main() -> None:
        answer: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(answer.set_exception, KeyError("k"))
        await answer

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_a_task_cancelled_while_awaiting_cancels_the_deferred() -> None:
    async def main() -> tuple[bool, list[str]]:
        stopped: list[str] = []
        answer: Deferred[int] = Deferred(lambda: stopped.append("stop"))

        async def wait() -> int:
            return await answer

        task = asyncio.ensure_future(wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return answer.cancelled(), stopped

    assert asyncio.run(main()) == (True, ["stop"])


def test_awaiting_a_cancelled_deferred_raises_cancelled() -> None:
    async def main() -> None:
        answer: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(answer.cancel)
        await answer

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_a_value_set_after_the_awaiting_task_was_cancelled_is_refused() -> None:
    # The task's cancellation reaches the deferred one loop turn later; a value set in
    # between (the upstream read that completes the head) must not be left with nobody
    # to consume or release it: refused, and the deferred cancelled (on_cancel runs).
    async def main() -> tuple[bool, list[str], bool]:
        stopped: list[str] = []
        answer: Deferred[str] = Deferred(lambda: stopped.append("abort upstream"))

        async def wait() -> str:
            return await answer

        task = asyncio.ensure_future(wait())
        await asyncio.sleep(0)
        task.cancel()  # the client went away
        taken = answer.set_result("a response holding an upstream connection")
        with pytest.raises(asyncio.CancelledError):
            await task
        return taken, stopped, answer.cancelled()

    assert asyncio.run(main()) == (False, ["abort upstream"], True)


def test_a_failing_on_cancel_still_tells_the_consumer() -> None:
    def broken() -> None:
        raise RuntimeError("abort failed")

    answer: Deferred[int] = Deferred(broken)
    told: list[bool] = []
    answer.then(lambda done: told.append(done.cancelled()))
    with pytest.raises(RuntimeError):
        answer.cancel()
    assert told == [True]


def test_a_second_consumer_is_refused_after_the_value_too() -> None:
    answer: Deferred[int] = Deferred()
    answer.then(lambda done: None)
    answer.set_result(1)
    with pytest.raises(RuntimeError):
        answer.then(lambda done: None)
