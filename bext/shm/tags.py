"""Cache tag generations in the shared segment (issue 15, item 3).

A cached entry remembers, for each of its tags, the tag's generation when it was stored;
invalidating a tag increments its generation, so every entry stored before is stale, in
every worker at once, whatever the number of entries: one word write per tag.

Scheme: the reserved region holds ``TAG_ENTRIES`` int64 words (``TAGS_OFFSET`` in
:mod:`bext.shm.layout`). Word 0 is the global generation that "purge all" increments; a
tag hashes (blake2b, 8 bytes) to one of the words from 2 on. **Colliding tags share a
generation**: invalidating one also invalidates entries of the other. That is safe (it
only causes extra misses, never a stale hit) and deliberate:

* an exact table would need (hash, generation) pairs, so half the slots, plus probing and
  a policy for when it fills up, which could only be "bump the global generation";
* a shared word is never full, never needs eviction, and a read is one word without a
  lock (an aligned int64 load);
* with 65535 tag words, a collision costs one extra miss for the few entries of the
  other tag, no more than any invalidation of that tag would.

The hash itself is not stored: with sharing, only the slot matters.

Word 1 counts invalidations of any kind (:meth:`TagTable.sequence`). The global
generation is addressed as the empty tag :data:`ALL` (real tags are never
empty), so an entry's stored pairs, as :meth:`TagTable.snapshot` makes them, include it
and :meth:`TagTable.fresh` needs nothing else.

**Soft invalidation** (mark stale, serve stale while revalidating) shares the word: its
low :data:`SOFT_BITS` bits count soft invalidations, the rest hard ones. An entry stores
whole words; :meth:`TagTable.state` tells "nothing changed" (:data:`FRESH`), "only soft
invalidations since" (:data:`SOFT`: the entry may be served stale once while it is
refreshed) and "invalidated" (:data:`HARD`) apart with the same one-word reads.

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

__all__ = ["ALL", "FRESH", "HARD", "LOCK_REGION", "SOFT", "SOFT_BITS", "TagTable", "tag_hash"]

LOCK_REGION = 3
ALL = b""
"""The pseudo-tag of the global ("purge all") generation, word 0 of the region."""

_ALL_SLOT = 0
_SEQUENCE_SLOT = 1
_FIRST_TAG_SLOT = 2
_WRAP = 1 << 64
_HALF = 1 << 63
SOFT_BITS = 20
_SOFT_MASK = (1 << SOFT_BITS) - 1

FRESH = 0
"""No tag of the entry was invalidated since it was stored."""
SOFT = 1
"""Only soft invalidations since: stale, but it may be served while it is refreshed."""
HARD = 2
"""Invalidated: the entry must not be served."""


def tag_hash(tag: bytes) -> int:
    """The tag's 8-byte blake2b hash as a signed int64 (storable in a segment word)."""
    return int.from_bytes(hashlib.blake2b(tag, digest_size=8).digest(), "little", signed=True)


def _next(word: int, soft: bool = False) -> int:
    """The word after one more (hard or soft) invalidation, wrapping within int64 (never
    reached in practice); a soft one leaves the hard count alone and vice versa."""
    if soft:
        return (word & ~_SOFT_MASK) | ((word + 1) & _SOFT_MASK)
    return (word + (1 << SOFT_BITS) + _HALF) % _WRAP - _HALF


class TagTable:
    """The tag generations of one segment, shared by every process that maps it."""

    def __init__(self, segment: Segment, *, entries: int = TAG_ENTRIES) -> None:
        """``entries`` words of the region are used (tests pass a tiny table)."""
        if not 3 <= entries <= TAG_ENTRIES:
            raise ValueError(f"entries must be between 3 and {TAG_ENTRIES}")
        self._words = segment.words
        self._entries = entries
        self._lock = StripedLock(segment, region=LOCK_REGION)

    def slot(self, tag: bytes) -> int:
        """The slot (0 for :data:`ALL`, 1 .. entries-1 for a tag) holding its generation."""
        if tag == ALL:
            return _ALL_SLOT
        return _FIRST_TAG_SLOT + (tag_hash(tag) % _WRAP) % (self._entries - _FIRST_TAG_SLOT)

    def generation(self, tag: bytes) -> int:
        """How many times the tag's slot was invalidated (hard), the soft count aside."""
        return self._words[TAGS_OFFSET + self.slot(tag)] >> SOFT_BITS

    def generations(self, tags: Iterable[bytes]) -> tuple[int, ...]:
        words = self._words
        return tuple(words[TAGS_OFFSET + self.slot(tag)] >> SOFT_BITS for tag in tags)

    def all_generation(self) -> int:
        return self._words[TAGS_OFFSET + _ALL_SLOT] >> SOFT_BITS

    def snapshot(self, tags: Iterable[bytes]) -> tuple[tuple[bytes, int], ...]:
        """The ``(tag, generation)`` pairs to store with a new entry, :data:`ALL` first.

        Take it *before* the response is fetched from upstream, so an invalidation that
        lands while the response is on its way makes the stored entry stale at once.
        """
        words = self._words
        pairs = [(ALL, words[TAGS_OFFSET + _ALL_SLOT])]
        seen = {ALL}
        for tag in tags:
            if tag not in seen:
                seen.add(tag)
                pairs.append((tag, words[TAGS_OFFSET + self.slot(tag)]))
        return tuple(pairs)

    def fresh(self, stored: Iterable[tuple[bytes, int]]) -> bool:
        """Whether no tag of an entry stored with these pairs was invalidated since, soft
        or hard. Only the pairs given are checked: pairs from :meth:`snapshot` include
        :data:`ALL`."""
        words = self._words
        return all(words[TAGS_OFFSET + self.slot(tag)] == gen for tag, gen in stored)

    def state(self, stored: Iterable[tuple[bytes, int]]) -> int:
        """:data:`FRESH`, :data:`SOFT` or :data:`HARD` for an entry stored with these pairs."""
        words = self._words
        state = FRESH
        for tag, gen in stored:
            word = words[TAGS_OFFSET + self.slot(tag)]
            if word != gen:
                if word >> SOFT_BITS != gen >> SOFT_BITS:
                    return HARD
                state = SOFT
        return state

    def stamp(self, tags: Iterable[bytes]) -> tuple[tuple[int, int], ...]:
        """What an entry stores: ``(slot, word)`` of the global generation and of each tag's
        slot (once per slot). Like :meth:`snapshot`, taken before the fetch."""
        words = self._words
        slots = dict.fromkeys([_ALL_SLOT, *(self.slot(tag) for tag in tags)])
        return tuple((slot, words[TAGS_OFFSET + slot]) for slot in slots)

    def check(self, stamp: Iterable[tuple[int, int]]) -> int:
        """:data:`FRESH`, :data:`SOFT` or :data:`HARD` for an entry with this :meth:`stamp`."""
        words = self._words
        last = self._entries
        state = FRESH
        for slot, gen in stamp:
            if not 0 <= slot < last:
                return HARD  # stored under another table size: unknown, so not served
            word = words[TAGS_OFFSET + slot]
            if word != gen:
                if word >> SOFT_BITS != gen >> SOFT_BITS:
                    return HARD
                state = SOFT
        return state

    def sequence(self) -> int:
        """A count of every invalidation so far, of any tag (one word, no lock).

        A fetch reads it before it goes upstream and again once it knows the response's
        tags: if it moved, some tag may have been invalidated while the response was on
        its way, and the response is not stored (its tags could not be stamped with the
        generations from before the fetch).
        """
        return self._words[TAGS_OFFSET + _SEQUENCE_SLOT]

    def invalidate(self, tags: Iterable[bytes], *, soft: bool = False) -> None:
        """Invalidate each tag (a slot shared by several tags, once); ``soft`` marks the
        entries stale instead (:data:`SOFT`)."""
        slots = sorted({self.slot(tag) for tag in tags})
        self._bump_sequence()
        for slot in slots:
            self._increment(slot, soft)

    def invalidate_all(self, *, soft: bool = False) -> None:
        """Make every entry stored so far invalid, or only stale with ``soft``."""
        self._bump_sequence()
        self._increment(_ALL_SLOT, soft)

    def _bump_sequence(self) -> None:
        index = TAGS_OFFSET + _SEQUENCE_SLOT
        words = self._words
        with self._lock.hold(_SEQUENCE_SLOT):
            words[index] = (words[index] + 1 + _HALF) % _WRAP - _HALF

    def _increment(self, slot: int, soft: bool = False) -> None:
        index = TAGS_OFFSET + slot
        words = self._words
        with self._lock.hold(slot):
            words[index] = _next(words[index], soft)
