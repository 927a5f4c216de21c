"""Which worker is fetching a missing cache entry: request coalescing across workers.

When several clients miss the same entry at once, one request goes upstream and the
others wait for the entry it stores (nginx's ``proxy_cache_lock``). Inside a worker the
waiters share a future; across workers they find the fetching worker's *claim* here.

An entry is three int64s: ``key`` (a 63-bit hash of the cache key), ``owner`` (the pid
of the fetching worker) and ``expires`` (CLOCK_MONOTONIC milliseconds, system-wide). A key
has one home entry (``key % FILL_ENTRIES``), no probing: when two keys being fetched at
the same moment share an entry, the second is simply not coalesced (it goes upstream as
if there were no lock), which costs one extra upstream request, never a wrong answer.

A claim ends when its owner releases it or when it expires (``lock_timeout``), so a worker
killed mid-fetch holds nobody up for longer than that. Each entry is read and written
under one stripe of a :class:`~bext.shm.locks.StripedLock` (region 4); never across an
``await``.
"""

from __future__ import annotations

import hashlib
import time

from bext.shm.layout import FILL_ENTRIES, FILL_FIELDS, FILL_OFFSET, Segment
from bext.shm.locks import StripedLock

__all__ = ["LOCK_REGION", "FillTable", "fill_key"]

LOCK_REGION = 4
KEY, OWNER, EXPIRES = range(FILL_FIELDS)


def fill_key(cache_key: bytes) -> int:
    """The cache key's 63-bit hash: positive and never 0 (an empty entry)."""
    digest = hashlib.blake2b(cache_key, digest_size=8, person=b"bext-fill").digest()
    return int.from_bytes(digest, "big") >> 1 or 1


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class FillTable:
    """One process's handle on the table; ``owner`` is the pid its claims are made under."""

    __slots__ = ("_lock", "_words", "owner")

    def __init__(self, segment: Segment, owner: int) -> None:
        self._words = segment.words
        self._lock = StripedLock(segment, region=LOCK_REGION)
        self.owner = owner

    def claim(self, key: int, timeout: float) -> bool:
        """Claim the fetch of ``key`` for ``timeout`` seconds.

        True: this process fetches (the entry was free, expired, or is held for another
        key); False: another process is fetching ``key`` right now.
        """
        base = FILL_OFFSET + (key % FILL_ENTRIES) * FILL_FIELDS
        words = self._words
        now = _now_ms()
        with self._lock.hold(key % FILL_ENTRIES):
            held = words[base + KEY]
            if held and words[base + EXPIRES] > now:
                if held == key and words[base + OWNER] != self.owner:
                    return False
                if held != key:
                    return True  # another key's fetch: not coalesced, not recorded
            words[base + KEY] = key
            words[base + OWNER] = self.owner
            words[base + EXPIRES] = now + int(timeout * 1000)
        return True

    def busy(self, key: int) -> bool:
        """Whether another process holds an unexpired claim on ``key`` (one read, no lock:
        a waiter polls this)."""
        base = FILL_OFFSET + (key % FILL_ENTRIES) * FILL_FIELDS
        words = self._words
        return (
            words[base + KEY] == key
            and words[base + OWNER] != self.owner
            and words[base + EXPIRES] > _now_ms()
        )

    def release(self, key: int) -> None:
        """End this process's claim on ``key`` (nothing if it holds none)."""
        base = FILL_OFFSET + (key % FILL_ENTRIES) * FILL_FIELDS
        words = self._words
        with self._lock.hold(key % FILL_ENTRIES):
            if words[base + KEY] == key and words[base + OWNER] == self.owner:
                words[base + KEY] = 0
                words[base + OWNER] = 0
                words[base + EXPIRES] = 0
