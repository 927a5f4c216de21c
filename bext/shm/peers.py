"""Open connections per client address, shared by every worker (``max_connections_per_ip``).

An entry is three int64s: ``key`` (a 63-bit hash of the address, never the address),
``owner`` (the pid of the worker holding the connections) and ``count``. One address
served by three workers has three entries; its total is their sum. Keeping a count per
worker is what makes a crash harmless: a worker that dies cannot decrement what it held,
so the master, when it reaps the worker, drops every entry that worker owned
(:func:`release_owner`) before anything takes its place. Nothing has to be rebuilt from
the live workers, and nothing leaks.

The table is split into :data:`PARTITIONS` partitions by the key's low byte, each guarded
by one stripe of a :class:`~bext.shm.locks.StripedLock` (region 1): an address's entries
are found by linear probing inside its partition, starting at a home slot from the key's
higher bits, over at most :data:`WINDOW` entries, until an empty one. Released entries
become tombstones (probing goes on past them); a run of tombstones that ends at an empty
entry is emptied again, so probe paths stay short as addresses come and go.

When an address's window holds no free entry (a partition crowded far beyond any real
load), the connection is admitted uncounted (:data:`UNTRACKED`) rather than refused: a
full table must not lock out clients that have nothing open.
"""

from __future__ import annotations

import hashlib

from bext.shm.layout import PEER_ENTRIES, PEER_FIELDS, PEER_OFFSET, Segment
from bext.shm.locks import StripedLock

LOCK_REGION = 1
PARTITIONS = 256
PER_PARTITION = PEER_ENTRIES // PARTITIONS
WINDOW = 64
"""Entries an address's probe path may cover in its partition."""

KEY, OWNER, COUNT = range(PEER_FIELDS)
EMPTY = 0
TOMBSTONE = -1

ADMITTED = 1
"""Counted: release it when the connection closes."""
UNTRACKED = 2
"""Admitted without a count (no room in the table): nothing to release."""
REFUSED = 0
"""The address holds its limit already."""


def peer_key(address: str) -> int:
    """The address's 63-bit key: positive, never 0 (empty) nor -1 (tombstone)."""
    digest = hashlib.blake2b(address.encode("utf-8", "surrogateescape"), digest_size=8,
                             person=b"bext-peer").digest()  # fmt: skip
    return int.from_bytes(digest, "big") >> 1 or 1


def _entry(partition: int, position: int) -> int:
    """The word offset of entry ``position`` (any int, wrapped) of ``partition``."""
    return PEER_OFFSET + (partition * PER_PARTITION + position % PER_PARTITION) * PEER_FIELDS


class PeerTable:
    """One process's handle on the table; ``owner`` is the pid its counts are kept under."""

    __slots__ = ("_lock", "_words", "owner")

    def __init__(self, segment: Segment, owner: int) -> None:
        self._words = segment.words
        self._lock = StripedLock(segment, region=LOCK_REGION)
        self.owner = owner

    def acquire(self, key: int, limit: int) -> int:
        """Count one more connection of ``key`` unless it holds ``limit`` already.

        Returns :data:`ADMITTED`, :data:`UNTRACKED` or :data:`REFUSED`.
        """
        partition = key % PARTITIONS
        home = (key >> 8) % PER_PARTITION
        words = self._words
        owner = self.owner
        with self._lock.hold(partition):
            total = 0
            mine = -1
            free = -1
            for step in range(WINDOW):
                index = _entry(partition, home + step)
                held = words[index + KEY]
                if held == EMPTY:
                    if free < 0:
                        free = index
                    break
                if held == key:
                    total += words[index + COUNT]
                    if words[index + OWNER] == owner:
                        mine = index
                elif held == TOMBSTONE and free < 0:
                    free = index
            if total >= limit:
                return REFUSED
            if mine >= 0:
                words[mine + COUNT] += 1
                return ADMITTED
            if free < 0:
                return UNTRACKED
            words[free + OWNER] = owner
            words[free + COUNT] = 1
            words[free + KEY] = key
            return ADMITTED

    def release(self, key: int) -> None:
        """One connection of ``key`` counted by :meth:`acquire` has closed."""
        partition = key % PARTITIONS
        home = (key >> 8) % PER_PARTITION
        words = self._words
        owner = self.owner
        with self._lock.hold(partition):
            for step in range(WINDOW):
                index = _entry(partition, home + step)
                held = words[index + KEY]
                if held == EMPTY:
                    return
                if held == key and words[index + OWNER] == owner:
                    if words[index + COUNT] > 1:
                        words[index + COUNT] -= 1
                    else:
                        _free(words, partition, home + step)
                    return

    def total(self, key: int) -> int:
        """Connections of ``key`` open in every worker now (status and tests)."""
        partition = key % PARTITIONS
        home = (key >> 8) % PER_PARTITION
        words = self._words
        total = 0
        with self._lock.hold(partition):
            for step in range(WINDOW):
                index = _entry(partition, home + step)
                held = words[index + KEY]
                if held == EMPTY:
                    break
                if held == key:
                    total += words[index + COUNT]
        return total


def _free(words: memoryview, partition: int, position: int) -> None:
    """Release the entry at ``position``: a tombstone, or empty with the tombstones before
    it when the next entry is empty (no probe path can need them any more)."""
    index = _entry(partition, position)
    words[index + COUNT] = 0
    words[index + OWNER] = 0
    if words[_entry(partition, position + 1) + KEY] != EMPTY:
        words[index + KEY] = TOMBSTONE
        return
    words[index + KEY] = EMPTY
    for back in range(1, PER_PARTITION):
        index = _entry(partition, position - back)
        if words[index + KEY] != TOMBSTONE:
            break
        words[index + KEY] = EMPTY


def release_owner(segment: Segment, owner: int) -> int:
    """Drop every entry ``owner`` (a worker that has exited) holds; returns how many.

    The master calls this when it reaps a worker, before a replacement can start, so the
    connections a crashed worker had open stop counting against their addresses.
    """
    words = segment.words
    owners = words[PEER_OFFSET + OWNER : PEER_OFFSET + PEER_ENTRIES * PEER_FIELDS : PEER_FIELDS]
    found = [slot for slot, value in enumerate(owners.tolist()) if value == owner]
    if not found:
        return 0
    lock = StripedLock(segment, region=LOCK_REGION)
    for slot in found:
        partition, position = divmod(slot, PER_PARTITION)
        with lock.hold(partition):
            index = _entry(partition, position)
            if words[index + OWNER] == owner and words[index + KEY] not in (EMPTY, TOMBSTONE):
                _free(words, partition, position)
    return len(found)
