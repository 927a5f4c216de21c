"""Mutual exclusion between processes for read-modify-write of shared words.

Counters that only one worker writes need no lock (each slot block has one writer). A
word that every worker updates (a rate-limit bucket, the connections of one client
address, the requests in flight to one upstream server) does: Python has no atomic
compare-and-swap on shared memory.

POSIX record locks (``fcntl.lockf``, F_SETLKW) on the segment's memfd do the job:

* they belong to the process, so forked workers exclude each other (an OFD lock would
  not: forked processes share one open file description);
* the kernel drops them when the holder dies, so a killed worker never leaves one held;
* the descriptor survives ``exec``, so a binary upgrade's new master shares them.

A lock is a byte range past the end of the mapped data (record locks are advisory and do
not touch the mapping). Keys are spread over ``stripes`` locks. Hold one only around
synchronous code, never across an ``await``: record locks do not exclude coroutines of
the same process from each other, only other processes.
"""

from __future__ import annotations

import fcntl
from types import TracebackType

from bext.shm.layout import SIZE, Segment

DEFAULT_STRIPES = 257


class StripedLock:
    """``stripes`` independent locks on one segment; :meth:`hold` picks one by key."""

    def __init__(self, segment: Segment, region: int, stripes: int = DEFAULT_STRIPES) -> None:
        """``region`` tells users apart (0, 1, 2 ...): each has its own byte ranges."""
        self._fd = segment.fd
        self._stripes = stripes
        self._base = SIZE + region * stripes

    def hold(self, key: int) -> _Stripe:
        """``with lock.hold(key):`` the stripe of ``key``, held for the block."""
        return _Stripe(self._fd, self._base + key % self._stripes)


class _Stripe:
    """One stripe as a context manager: a plain class, not ``@contextmanager``, since it
    runs for every rate check, client connection and upstream request it guards (about a
    microsecond less each)."""

    __slots__ = ("_fd", "_offset")

    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self._offset = offset

    def __enter__(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, self._offset)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._offset)
