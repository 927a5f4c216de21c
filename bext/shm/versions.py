"""Entry versions: one shared word per cache-key hash, bumped whenever a stored entry of
that key changes (stored again, freshened, purged, marked stale).

Each worker keeps small hot entries decoded in memory (:mod:`bext.cache.memory`); an
entry there remembers its key's version when it was read, and is used only while the word
still holds it: one aligned word read per hit, no lock. Keys share words by hash
(``VERSION_ENTRIES`` of them): a change to one key also retires the memory copies of the
others on its word, which costs a read from the store, never a wrong answer.

Bumps are read-modify-writes from any process, under one stripe of a
:class:`~bext.shm.locks.StripedLock` (region 5), so none is lost. Never across an
``await``.
"""

from __future__ import annotations

import hashlib

from bext.shm.layout import VERSION_ENTRIES, VERSIONS_OFFSET, Segment
from bext.shm.locks import StripedLock

__all__ = ["LOCK_REGION", "EntryVersions", "version_slot"]

LOCK_REGION = 5
_WRAP = 1 << 64
_HALF = 1 << 63


def version_slot(key: bytes) -> int:
    """The word of ``key`` (0 .. VERSION_ENTRIES-1)."""
    digest = hashlib.blake2b(key, digest_size=8, person=b"bext-version").digest()
    return int.from_bytes(digest, "little") % VERSION_ENTRIES


class EntryVersions:
    """The version words of one segment."""

    __slots__ = ("_lock", "_words")

    def __init__(self, segment: Segment) -> None:
        self._words = segment.words
        self._lock = StripedLock(segment, region=LOCK_REGION)

    def get(self, slot: int) -> int:
        return self._words[VERSIONS_OFFSET + slot]

    def bump(self, key: bytes) -> None:
        """An entry of ``key`` changed: every memory copy of it is out of date."""
        slot = version_slot(key)
        index = VERSIONS_OFFSET + slot
        words = self._words
        with self._lock.hold(slot):
            words[index] = (words[index] + 1 + _HALF) % _WRAP - _HALF
