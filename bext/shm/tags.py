"""Cache tag generations in the shared segment (issue 15, item 3).

A cached entry remembers, for each of its tags, the tag's generation when it was stored;
invalidating a tag increments its generation, so every entry stored before is stale, in
every worker at once, whatever the number of entries: one word write per tag.

Scheme: the reserved region holds ``TAG_ENTRIES`` int64 words (``TAGS_OFFSET`` in
:mod:`bext.shm.layout`). Word 0 is the global generation that "purge all" increments; a
tag hashes (blake2b, 8 bytes) to one of the other words. **Colliding tags share a
generation**: invalidating one also invalidates entries of the other. That is safe (it
only causes extra misses, never a stale hit) and deliberate:

* an exact table would need (hash, generation) pairs, so half the slots, plus probing and
  a policy for when it fills up, which could only be "bump the global generation";
* a shared word is never full, never needs eviction, and a read is one word without a
  lock (an aligned int64 load);
* with 65535 tag words, a collision costs one extra miss for the few entries of the
  other tag, no more than any invalidation of that tag would.

The hash itself is not stored: with sharing, only the slot matters.

The global generation is addressed as the empty tag :data:`ALL` (real tags are never
empty), so an entry's stored pairs, as :meth:`TagTable.snapshot` makes them, include it
and :meth:`TagTable.fresh` needs nothing else.

Increments are read-modify-writes that any process may do, so they hold one stripe of a
``StripedLock`` (region 3) per word, one word at a time: invalidating several tags is not
atomic as a whole (a lookup in between sees some of them invalidated, as if the tags had
been invalidated one after the other), but no increment is ever lost. Never across an
``await``; every method here is synchronous.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from bext.shm.layout import TAG_ENTRIES, TAGS_OFFSET, Segment
from bext.shm.locks import StripedLock

__all__ = ["ALL", "LOCK_REGION", "TagTable", "tag_hash"]

LOCK_REGION = 3
ALL = b""
"""The pseudo-tag of the global ("purge all") generation, word 0 of the region."""

_ALL_SLOT = 0
_WRAP = 1 << 64
_HALF = 1 << 63


def tag_hash(tag: bytes) -> int:
    """The tag's 8-byte blake2b hash as a signed int64 (storable in a segment word)."""
    return int.from_bytes(hashlib.blake2b(tag, digest_size=8).digest(), "little", signed=True)


def _next(generation: int) -> int:
    """``generation + 1``, wrapping within int64 (never reached in practice)."""
    return (generation + 1 + _HALF) % _WRAP - _HALF


class TagTable:
    """The tag generations of one segment, shared by every process that maps it."""

    def __init__(self, segment: Segment, *, entries: int = TAG_ENTRIES) -> None:
        """``entries`` words of the region are used (tests pass a tiny table)."""
        if not 2 <= entries <= TAG_ENTRIES:
            raise ValueError(f"entries must be between 2 and {TAG_ENTRIES}")
        self._words = segment.words
        self._entries = entries
        self._lock = StripedLock(segment, region=LOCK_REGION)

    def slot(self, tag: bytes) -> int:
        """The slot (0 for :data:`ALL`, 1 .. entries-1 for a tag) holding its generation."""
        if tag == ALL:
            return _ALL_SLOT
        return 1 + (tag_hash(tag) % _WRAP) % (self._entries - 1)

    def generation(self, tag: bytes) -> int:
        return self._words[TAGS_OFFSET + self.slot(tag)]

    def generations(self, tags: Iterable[bytes]) -> tuple[int, ...]:
        words = self._words
        return tuple(words[TAGS_OFFSET + self.slot(tag)] for tag in tags)

    def all_generation(self) -> int:
        return self._words[TAGS_OFFSET + _ALL_SLOT]

    def snapshot(self, tags: Iterable[bytes]) -> tuple[tuple[bytes, int], ...]:
        """The ``(tag, generation)`` pairs to store with a new entry, :data:`ALL` first.

        Take it *before* the response is fetched from upstream, so an invalidation that
        lands while the response is on its way makes the stored entry stale at once.
        """
        pairs = [(ALL, self.all_generation())]
        seen = {ALL}
        for tag in tags:
            if tag not in seen:
                seen.add(tag)
                pairs.append((tag, self.generation(tag)))
        return tuple(pairs)

    def fresh(self, stored: Iterable[tuple[bytes, int]]) -> bool:
        """Whether no tag of an entry stored with these pairs was invalidated since.

        Only the pairs given are checked: pairs from :meth:`snapshot` include :data:`ALL`.
        """
        words = self._words
        return all(words[TAGS_OFFSET + self.slot(tag)] == gen for tag, gen in stored)

    def invalidate(self, tags: Iterable[bytes]) -> None:
        """Increment the generation of each tag (a slot shared by several tags, once)."""
        slots = sorted({self.slot(tag) for tag in tags})
        for slot in slots:
            self._increment(slot)

    def invalidate_all(self) -> None:
        """Make every entry stored so far stale (the global generation)."""
        self._increment(_ALL_SLOT)

    def _increment(self, slot: int) -> None:
        index = TAGS_OFFSET + slot
        words = self._words
        with self._lock.hold(slot):
            words[index] = _next(words[index])
