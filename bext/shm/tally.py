"""A worker's counters between publications to the shared segment.

Counting a response touches a dozen counters (the slot block's totals, the labelled
metrics). Written straight into the shared mapping, each is a buffer-protocol
read-modify-write of a line other processes read; in a private list it is a plain list
item, about half the cost on the proxy path. So a worker counts into a :class:`Tally`
and copies it to its range of the segment in one slice assignment at most
:data:`PUBLISH_DELAY` after it changed, at exit, and before it reads the segment itself
(its own admin endpoints). Readers in other processes (the master, StatsD, another
worker's ``/__bext/metrics``) see figures at most that old. The range has one writer,
the worker, so a publication is never lost to a concurrent one.
"""

from __future__ import annotations

import asyncio
from array import array

__all__ = ["PUBLISH_DELAY", "Tally"]

PUBLISH_DELAY = 0.02
"""Seconds from a change to its publication (a timer armed by the first change)."""


class Tally:
    """The private copy of ``count`` words of the segment starting at ``start``.

    Starts from what the segment holds, so a worker that replaces a dead one in the same
    block carries on from its counts.
    """

    __slots__ = ("_start", "_stop", "_words", "armed", "values")

    def __init__(self, words: memoryview, start: int, count: int) -> None:
        self._words = words
        self._start = start
        self._stop = start + count
        self.values: list[int] = list(words[start : start + count])
        """The counts: increment items in place, then call :meth:`changed`."""
        self.armed = False
        """A publication is scheduled (writers test this before calling changed)."""

    def changed(self) -> None:
        """Publish within :data:`PUBLISH_DELAY` (now, outside an event loop)."""
        if self.armed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.publish()
            return
        self.armed = True
        loop.call_later(PUBLISH_DELAY, self.publish)

    def publish(self) -> None:
        """Copy the counts to the segment now."""
        self.armed = False
        self._words[self._start : self._stop] = array("q", self.values)
