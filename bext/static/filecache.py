"""The static server's two bounded caches: file metadata by count, file contents by bytes.

Both are plain LRUs over :class:`collections.OrderedDict` (a hit is one C-level
``move_to_end``). Nothing here decides freshness: every entry is revalidated by the
handler with ``stat`` before use, so these caches only ever save work, never serve a
file that changed.

* :class:`EntryCache` maps a URL path to what is known about its file (headers, stat key,
  variants). It is per rule, and bounded by count so that a client walking a large media
  tree cannot grow it without limit. Entries are small; the limit is generous.
* :class:`ContentCache` holds the bytes of small files (up to ``static.max_cached_file``)
  within ``static.memory_cache`` bytes in total, shared by every static rule of a worker.
  Evicting an item calls its ``evict()`` so it drops its body and prebuilt response; an
  entry leaving the metadata cache releases its bodies here.

``items`` is public on purpose: the handler's fast path does its lookup and
``move_to_end`` on it directly, saving a Python call per request.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

__all__ = ["ContentCache", "EntryCache", "Evictable", "Releasable"]


class Evictable(Protocol):
    def evict(self) -> None:
        """Forget the cached body (the content cache no longer accounts for it)."""


class Releasable(Protocol):
    def release(self, contents: ContentCache) -> None:
        """Give back whatever the item holds in ``contents``."""


E = TypeVar("E", bound=Releasable)


class ContentCache:
    """File bodies, least recently used first out, within ``limit`` bytes."""

    __slots__ = ("items", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.items: OrderedDict[Evictable, int] = OrderedDict()

    def add(self, item: Evictable, size: int) -> bool:
        """Account for ``size`` bytes held by ``item``; False if it can never fit."""
        if size > self.limit:
            return False
        previous = self.items.pop(item, None)
        if previous is not None:
            self.used -= previous
        items = self.items
        while self.used + size > self.limit and items:
            old, old_size = items.popitem(last=False)
            self.used -= old_size
            old.evict()
        items[item] = size
        self.used += size
        return True

    def touch(self, item: Evictable) -> None:
        """Mark ``item`` as just used (it must be in the cache)."""
        self.items.move_to_end(item)

    def discard(self, item: Evictable) -> None:
        """Stop accounting for ``item`` (it drops its body itself)."""
        size = self.items.pop(item, None)
        if size is not None:
            self.used -= size

    def __len__(self) -> int:
        return len(self.items)


class EntryCache(Generic[E]):
    """Per-URL entries, least recently used first out, at most ``limit`` of them."""

    __slots__ = ("_contents", "items", "limit")

    def __init__(self, limit: int, contents: ContentCache) -> None:
        self.limit = limit
        self._contents = contents
        self.items: OrderedDict[str, E] = OrderedDict()

    def get(self, key: str) -> E | None:
        entry = self.items.get(key)
        if entry is not None:
            self.items.move_to_end(key)
        return entry

    def put(self, key: str, entry: E) -> None:
        old = self.items.pop(key, None)
        if old is not None and old is not entry:
            old.release(self._contents)
        self.items[key] = entry
        while len(self.items) > self.limit:
            _, evicted = self.items.popitem(last=False)
            evicted.release(self._contents)

    def drop(self, key: str) -> None:
        entry = self.items.pop(key, None)
        if entry is not None:
            entry.release(self._contents)

    def __len__(self) -> int:
        return len(self.items)
