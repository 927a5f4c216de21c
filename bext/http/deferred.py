"""A value that a callback supplies later, handed to its one consumer at once.

What a handler returns when its answer is made by an I/O callback rather than a
coroutine: the proxy's warm-connection path (``ProxyHandler._send_now``) sends the
request head and returns a :class:`Deferred`; the upstream connection's read that
completes the response head settles it.

Why not an :class:`asyncio.Future`: ``Future.set_result`` schedules its done callbacks
(``call_soon``), so the exchange would learn of the answer one loop turn after the read
that made it: a handle, a trip through the ready queue and a second ``result()`` per
proxied request, about 1.5 µs in process (``bench/inproc_proxy.py``). A deferred calls
its consumer in the same call, the way a protocol's ``data_received`` calls its parser.

The contract is a future's, cut down to what an exchange needs:

* one consumer (:meth:`then`), called exactly once: with the value, the error, or the
  cancellation (an exchange that was cancelled finds :meth:`cancelled` true);
* :meth:`cancel` (the client went away) runs :attr:`on_cancel`, the producer's way to stop
  (abort the upstream connection), at once;
* awaiting it works too (the cache's miss path awaits whatever the proxy returns), and a
  task cancelled while awaiting it cancels it, as with a future. The task's cancellation
  reaches the deferred one loop turn later (a done callback of the future the task
  waits on); a value set in between is refused (:meth:`set_result` returns False, and the
  deferred is cancelled then, ``on_cancel`` included), so it is never left with nobody to
  consume or release it.

An exception raised by the consumer goes to the event loop's exception handler, as one
raised by a future's done callback would: it must not unwind into the producer's read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Deferred"]

T = TypeVar("T")

_PENDING = 0
_SETTLED = 1
_FAILED = 2
_CANCELLED = 3


class Deferred(Generic[T]):
    """A value to come (see the module's docstring)."""

    __slots__ = ("_consumed", "_consumer", "_error", "_state", "_value", "_waiter", "on_cancel")

    def __init__(self, on_cancel: Callable[[], object] | None = None) -> None:
        self._state = _PENDING
        self._value: T | None = None
        self._error: BaseException | None = None
        self._consumer: Callable[[Deferred[T]], None] | None = None
        self._consumed = False  # then() was called
        self._waiter: asyncio.Future[None] | None = None  # made only when awaited
        self.on_cancel = on_cancel
        """Called once if the deferred is cancelled while pending: stop making the value.
        The producer may replace it as its work moves on (a retry to cancel instead)."""

    # -- what the consumer sees --------------------------------------------------------------

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> T:
        """The value; raises the error, :class:`asyncio.CancelledError` or, while pending,
        :class:`asyncio.InvalidStateError`."""
        state = self._state
        if state == _SETTLED:
            return self._value  # type: ignore[return-value]
        if state == _FAILED:
            assert self._error is not None
            raise self._error
        if state == _CANCELLED:
            raise asyncio.CancelledError
        raise asyncio.InvalidStateError("the value is not there yet")

    def exception(self) -> BaseException | None:
        """The error (None with a value); raises like :meth:`result` when there is neither."""
        state = self._state
        if state == _FAILED:
            return self._error
        if state == _SETTLED:
            return None
        if state == _CANCELLED:
            raise asyncio.CancelledError
        raise asyncio.InvalidStateError("the value is not there yet")

    def then(self, consumer: Callable[[Deferred[T]], None]) -> None:
        """Call ``consumer(self)`` once this is done: now if it is, else when it is."""
        if self._consumed:
            raise RuntimeError("a deferred has one consumer")
        self._consumed = True
        if self._state == _PENDING:
            self._consumer = consumer
        else:
            self._call(consumer)

    def cancel(self) -> bool:
        """Give up on the value: True if it was pending (``on_cancel`` has run then)."""
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        on_cancel = self.on_cancel
        self.on_cancel = None
        try:
            if on_cancel is not None:
                on_cancel()
        finally:
            self._finished()  # the consumer and an awaiter hear of it whatever on_cancel did
        return True

    def __await__(self) -> Generator[Any, None, T]:
        if self._state == _PENDING:
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                waiter.add_done_callback(self._awaiter_left)
            yield from waiter
        return self.result()

    # -- what the producer does --------------------------------------------------------------

    def set_result(self, value: T) -> bool:
        """Settle with ``value``; False (and the deferred cancelled) when the task that
        awaited it was cancelled meanwhile: the caller still owns ``value`` then."""
        if self._state != _PENDING:
            raise asyncio.InvalidStateError("already done")
        if self._waiter is not None and self._awaiter_gone():  # no call when not awaited
            return False
        self._state = _SETTLED
        self._value = value
        self.on_cancel = None
        self._finished()
        return True

    def set_exception(self, error: BaseException) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError("already done")
        if self._waiter is not None and self._awaiter_gone():
            return
        self._state = _FAILED
        self._error = error
        self.on_cancel = None
        self._finished()

    # -- internals ---------------------------------------------------------------------------

    def _finished(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            self._call(consumer)

    def _call(self, consumer: Callable[[Deferred[T]], None]) -> None:
        try:
            consumer(self)
        except Exception as exc:  # reported as a done callback's error would be
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"exception in the consumer of {self!r}", "exception": exc}
            )

    def _awaiter_gone(self) -> bool:
        """The awaiting task was cancelled and :meth:`_awaiter_left` has not run yet:
        cancel now (True)."""
        waiter = self._waiter
        if waiter is not None and waiter.cancelled():
            self.cancel()
            return True
        return False

    def _awaiter_left(self, waiter: asyncio.Future[None]) -> None:
        """The waiter's done callback: a cancelled awaiting task cancels the value too."""
        self._awaiter_gone()

    def __repr__(self) -> str:
        state = ("pending", "settled", "failed", "cancelled")[self._state]
        return f"<Deferred {state}>"
