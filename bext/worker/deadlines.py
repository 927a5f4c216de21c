"""One lazily re-armed timer per connection, for all of its deadlines.

A connection has several deadlines (request head, body, keep-alive, send) that change on
every request. Re-scheduling a loop timer each time would churn the event loop's heap, so
state changes only store a timestamp and call :meth:`LazyTimer.arm`: a timer already due
earlier is left alone. When it fires, the connection's callback works out which deadline
(if any) has passed and arms the timer again for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LazyTimer:
    __slots__ = ("_at", "_callback", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    def arm(self, deadline: float) -> None:
        """Make sure the callback runs at ``deadline`` or earlier."""
        handle = self._handle
        if handle is not None:
            if self._at <= deadline:
                return  # fires earlier anyway, and the callback re-arms for this one
            handle.cancel()
        self._at = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._callback()


class BodyRate:
    """``body_min_rate`` for one request body: it must average ``rate`` bytes/s over each
    window of ``window`` seconds, counted from its first bytes.

    Averaging over a window, not per read, forgives a slow start or a pause. Time bext
    itself held the client back (flow control while the handler does not read) is not
    counted: :meth:`hold` and :meth:`release` bracket it.
    """

    __slots__ = ("_held", "_held_since", "_mark", "_since")

    def __init__(self) -> None:
        self._since = 0.0  # the current window's start (0: no bytes yet)
        self._mark = 0  # how much of the body had arrived then
        self._held = 0.0  # seconds of the window bext held the client back
        self._held_since = 0.0

    def first_bytes(self, now: float, window: float) -> float | None:
        """Note the body's first bytes; returns when to check first (None if noted already)."""
        if self._since:
            return None
        self._since = now
        return now + window

    def hold(self, now: float) -> None:
        if self._since and not self._held_since:
            self._held_since = now

    def release(self, now: float) -> None:
        if self._held_since:
            self._held += now - self._held_since
            self._held_since = 0.0

    def check(self, now: float, received: int, rate: int, window: float) -> float | None:
        """The next deadline, or None when the body is too slow. Call only while reading."""
        if not self._since:
            return now + window
        deadline = self._since + self._held + window
        if deadline > now:
            return deadline
        if received - self._mark < rate * (now - self._since - self._held):
            return None
        self._since, self._mark, self._held = now, received, 0.0
        return now + window
