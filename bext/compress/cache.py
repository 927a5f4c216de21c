"""A byte-bounded LRU of compressed bodies (``[compression] memory_cache``, per worker).

Compressing the same stylesheet on every request is the main CPU cost of on-the-fly
compression; bodies with an ETag are the same bytes each time, so their compressed forms
are kept here. Each worker has its own cache (workers share no memory yet), so the setting
bounds one worker's use.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

ENTRY_OVERHEAD = 200
"""Bytes charged per entry besides its body (key, dict slot, bytes header), so that many
tiny entries cannot exceed the bound either."""


class CompressedCache:
    __slots__ = ("_entries", "capacity", "max_entry", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # One body may take at most a quarter of the cache, so a few large files cannot
        # flush out all the small ones that make up most requests.
        self.max_entry = capacity // 4
        self.size = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def fits(self, size: int) -> bool:
        """Whether a body of ``size`` bytes would be kept at all."""
        return size + ENTRY_OVERHEAD <= self.max_entry

    def put(self, key: Hashable, body: bytes) -> None:
        cost = len(body) + ENTRY_OVERHEAD
        if cost > self.max_entry:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old) + ENTRY_OVERHEAD
        self._entries[key] = body
        self.size += cost
        while self.size > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted) + ENTRY_OVERHEAD
