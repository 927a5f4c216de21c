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
