"""Each worker's memory tier: small hot entries kept decoded, with their policy numbers.

A hit from the store costs a read transaction, two JSON decodes and the parsing of the
stored ``Cache-Control`` for freshness; for a small page that is most of the work. The
tier keeps, per primary key, the variants read recently (bodies up to ``max_entry``
bytes, ``max_bytes`` in all, least recently used out first), each with its freshness
lifetime and corrected initial age computed once, and the key's version word
(:mod:`bext.shm.versions`) from before it was read: a copy is used only while that word
is unchanged, so a response stored, freshened or purged by any worker retires every
worker's copy at its next lookup. Tag invalidations need nothing here: every hit checks
the entry's tag stamp against the shared generations anyway.

Copies are shared by the requests they answer and never changed in place (the handler
copies before it freshens one).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bext.cache.store import StoredResponse
from bext.protocol.events import Headers

__all__ = ["Held", "MemoryTier"]

MAX_ENTRY = 256 * 1024
"""The largest body kept in memory (the store's inline limit: larger ones are files)."""


@dataclass(slots=True)
class Held:
    """One stored variant as the handler needs it, plus what keeps it honest."""

    stored: StoredResponse
    lifetime: float
    """Freshness lifetime in seconds (RFC 9111 §4.2.1)."""
    initial_age: float
    """Corrected initial age in seconds (§4.2.3)."""
    plain: bool
    """No response directive that needs the full evaluation on a fresh hit (``no-cache``)."""
    client_headers: Headers
    """The stored fields as a client gets them, before ``Age`` and ``Cache-Status``."""
    version: int = 0
    slot: int = 0


class MemoryTier:
    """Byte-bounded LRU of :class:`Held` variants by primary key (one per worker)."""

    def __init__(self, max_bytes: int, max_entry: int = MAX_ENTRY) -> None:
        self.max_bytes = max_bytes
        self.max_entry = min(max_entry, max_bytes)
        self._entries: OrderedDict[bytes, list[Held]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return sum(len(variants) for variants in self._entries.values())

    @property
    def size(self) -> int:
        """Bytes held (bodies and header values)."""
        return self._size

    def get(
        self, key: bytes, request_headers: Headers, version: Callable[[int], int]
    ) -> Held | None:
        """The variant the request selects, if its key's version word (``version(slot)``)
        still holds the value it had when the copy was made."""
        variants = self._entries.get(key)
        if variants is None:
            return None
        first = variants[0]
        if version(first.slot) != first.version:
            self.drop(key)
            return None
        for held in variants:
            if held.stored.secondary.matches(request_headers):
                self._entries.move_to_end(key)
                return held
        return None

    def put(self, key: bytes, held: Held) -> None:
        """Keep ``held`` (replacing the same variant); nothing if its body is too large."""
        stored = held.stored
        if stored.body is None or stored.length > self.max_entry or self.max_bytes <= 0:
            return
        variants = self._entries.get(key)
        if variants is not None and variants[0].version != held.version:
            self.drop(key)
            variants = None
        if variants is None:
            variants = self._entries[key] = []
        for index, other in enumerate(variants):
            if other.stored.digest == stored.digest:
                self._size -= _size(other)
                del variants[index]
                break
        variants.append(held)
        self._size += _size(held)
        self._entries.move_to_end(key)
        while self._size > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._size -= sum(_size(other) for other in evicted)

    def drop(self, key: bytes) -> None:
        variants = self._entries.pop(key, None)
        if variants is not None:
            self._size -= sum(_size(held) for held in variants)

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0


def _size(held: Held) -> int:
    stored = held.stored
    return stored.length + sum(len(n) + len(v) for n, v in stored.headers) + 256
