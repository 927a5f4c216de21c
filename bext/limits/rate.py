"""Request rates across every worker: GCRA buckets in the shared segment.

One decision per key, whatever worker the request reached: the bucket of a key is one
entry of the segment's rate table, read and written under a process lock
(:class:`~bext.shm.locks.StripedLock`, region 0), so two workers never both take the last
token. The segment lives as long as the master, so buckets survive reloads (and binary
upgrades, which pass the segment on); a bucket is a key hash and a time, never a name.

The algorithm is GCRA (the generic cell rate algorithm), which behaves exactly like
nginx's ``limit_req ... burst=N nodelay`` and needs one number per key: the *theoretical
arrival time* (TAT) of the next request. With ``interval`` = 1/rate and ``tolerance`` =
``burst`` x ``interval``, a request at ``now`` is allowed when ``TAT - now <= tolerance``
and then moves the TAT to ``max(TAT, now) + interval``; a refused request changes
nothing. A new key may send ``burst + 1`` requests at once, then one per interval; the
client learns when the next one will pass (``TAT - tolerance - now``: Retry-After).

The table has :data:`~bext.shm.layout.RATE_ENTRIES` entries in :data:`PARTITIONS`
partitions (the key's low byte; one lock stripe each). A key lives within
:data:`WINDOW` entries of its home slot. An entry whose TAT has passed is as good as
empty (its key would start afresh anyway), so it is reused without any clean-up. When a
window holds only live buckets, the one that frees up soonest is taken over: that key
starts afresh, which errs on the side of letting a request through and never blocks one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

from bext.config.schema import LimitConfig
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.limits.keys import KeyHasher, key_function
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.layout import RATE_ENTRIES, RATE_FIELDS, RATE_OFFSET, Segment
from bext.shm.locks import StripedLock

LOCK_REGION = 0
PARTITIONS = 256
PER_PARTITION = RATE_ENTRIES // PARTITIONS
WINDOW = 16
KEY, TAT = range(RATE_FIELDS)
EMPTY = 0


class RateTable:
    """The rate table of a segment, or a private one (no segment: tests, ``bext check``)."""

    __slots__ = ("_base", "_hold", "_words")

    def __init__(self, segment: Segment | None) -> None:
        self._hold: Callable[[int], AbstractContextManager[object]]
        if segment is not None:
            self._words = segment.words
            self._base = RATE_OFFSET
            self._hold = StripedLock(segment, region=LOCK_REGION).hold
        else:
            self._words = memoryview(bytearray(RATE_ENTRIES * RATE_FIELDS * 8)).cast("q")
            self._base = 0
            self._hold = nullcontext  # one process: nothing to exclude

    def take(self, key: int, now: int, interval: int, tolerance: int) -> int:
        """One request of ``key`` at ``now`` (ns): 0 if allowed (and counted), else how
        many nanoseconds until one would be."""
        partition = key % PARTITIONS
        home = (key >> 8) % PER_PARTITION
        words = self._words
        first = self._base + partition * PER_PARTITION * RATE_FIELDS
        with self._hold(partition):
            found = -1
            spare = -1
            spare_tat = 0
            for step in range(WINDOW):
                index = first + (home + step) % PER_PARTITION * RATE_FIELDS
                held = words[index + KEY]
                if held == key:
                    found = index
                    break
                if held == EMPTY:
                    if spare < 0 or spare_tat > now:
                        spare, spare_tat = index, 0
                    break  # a key never lies past an empty entry of its window
                tat = words[index + TAT]
                if spare < 0 or tat < spare_tat:
                    spare, spare_tat = index, tat
            if found >= 0:
                tat = max(words[found + TAT], now)
            else:
                found = spare
                tat = now
            if tat - now > tolerance:
                return tat - tolerance - now
            words[found + TAT] = tat + interval
            words[found + KEY] = key
            return 0


class RateLimit:
    """A ``[limits.NAME]`` table compiled for the route rules that name it.

    :meth:`check` runs right after routing (the pipeline's route phase): None lets the
    request on to its handler, a Response (429 with Retry-After) answers it. Each worker
    gives it its shared-memory counters with :meth:`bind_counters`.
    """

    __slots__ = ("_hash", "_interval", "_key", "_table", "_tolerance", "counters", "name")

    def __init__(
        self, config: LimitConfig, trusted_proxies: Sequence[str], segment: Segment | None
    ) -> None:
        self.name = config.name
        self._interval = max(1, round(config.interval * 1e9))
        self._tolerance = self._interval * config.burst
        self._key = key_function(config.key, trusted_proxies)
        self._hash = KeyHasher(config.name)
        self._table = RateTable(segment)
        self.counters: SlotCounters = NullCounters()

    def check(self, request: Request) -> Response | None:
        wait = self._table.take(
            self._hash(self._key(request)), time.monotonic_ns(), self._interval, self._tolerance
        )
        if not wait:
            return None
        self.counters.rate_limited()
        retry_after = -(-wait // 1_000_000_000)  # whole seconds, rounded up (at least 1)
        return error_response(
            429, request.header(b"accept"), extra_headers=[(b"Retry-After", b"%d" % retry_after)]
        )
