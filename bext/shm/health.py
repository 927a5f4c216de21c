"""The upstream health table: one entry per upstream server, shared by every process.

An entry is four int64s: ``key`` (a 63-bit hash of the upstream name and server URL,
never the name itself), ``state``, ``streak`` and ``until_ms``. The master's prober writes
``UP``/``DOWN`` from active checks; a worker that fails to connect writes ``DOWN`` with a
cool-down (``until_ms``) so every worker stops trying that server at once. Each field is
written whole (one aligned 8-byte store), so readers never see a torn value; a
last-writer-wins race between the prober and a worker only delays a transition by a probe.

The table lives as long as the master lineage (reloads and binary upgrades keep it), so on
every reload the master calls `retain` with the servers of the old and the new
configuration: other entries become tombstones that later claims reuse. The config allows
at most `MAX_UPSTREAM_SERVERS` servers, half the table, so old plus new always fit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection

from bext.shm.layout import HEALTH_ENTRIES, HEALTH_FIELDS, HEALTH_OFFSET, Segment

UNKNOWN = 0
UP = 1
DOWN = 2

KEY, STATE, STREAK, UNTIL_MS = range(HEALTH_FIELDS)
EMPTY = 0
TOMBSTONE = -1  # a released entry: lookups go on past it, claims may reuse it
MAX_UPSTREAM_SERVERS = HEALTH_ENTRIES // 2


def server_key(upstream: str, url: str) -> int:
    digest = hashlib.blake2b(f"{upstream}\0{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1 or 1  # positive, never 0 (0 = empty entry)


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class HealthEntry:
    """One server's entry; ``index`` is the word offset of its first field."""

    __slots__ = ("index", "words")

    def __init__(self, segment: Segment, key: int) -> None:
        self.words = segment.words
        self.index = _find_or_claim(segment, key)

    def healthy(self) -> bool:
        words = self.words
        index = self.index
        if words[index + STATE] != DOWN:
            return True
        until = words[index + UNTIL_MS]
        return until != 0 and now_ms() >= until  # a passive mark's cool-down has passed

    def mark_failed(self, cool_down: float) -> None:
        """A worker could not connect: down for everyone until the cool-down ends."""
        words = self.words
        if words[self.index + STATE] != DOWN or words[self.index + UNTIL_MS]:
            words[self.index + UNTIL_MS] = now_ms() + int(cool_down * 1000)
            words[self.index + STATE] = DOWN

    def set_state(self, state: int, streak: int) -> None:
        """The prober's verdict (no cool-down: it stands until the next verdict)."""
        words = self.words
        words[self.index + UNTIL_MS] = 0
        words[self.index + STREAK] = streak
        words[self.index + STATE] = state

    @property
    def state(self) -> int:
        return int(self.words[self.index + STATE])


def _find_or_claim(segment: Segment, key: int) -> int:
    """Linear probing: the entry holding ``key``, else the first reusable one on its path."""
    words = segment.words
    reusable = -1
    home = key % HEALTH_ENTRIES
    for probe in range(HEALTH_ENTRIES):
        index = HEALTH_OFFSET + ((home + probe) % HEALTH_ENTRIES) * HEALTH_FIELDS
        held = words[index + KEY]
        if held == key:
            return index
        if held == TOMBSTONE and reusable < 0:
            reusable = index
        elif held == EMPTY:
            break  # entries are tombstoned, never emptied: key cannot lie past an empty one
    else:
        if reusable < 0:
            raise RuntimeError(
                f"the upstream health table is full ({HEALTH_ENTRIES} entries); "
                f"the configuration allows at most {MAX_UPSTREAM_SERVERS} servers"
            )
    if reusable < 0:
        reusable = index
    for field in (STATE, STREAK, UNTIL_MS):
        words[reusable + field] = 0
    words[reusable + KEY] = key
    return reusable


def retain(segment: Segment, keys: Collection[int]) -> int:
    """Release every entry whose key is not in ``keys``; returns how many were released.

    The master calls this before it claims a new configuration's entries, keeping the old
    configuration's too: workers of the old generation still hold and write theirs until
    they have drained.
    """
    words = segment.words
    wanted = set(keys)
    released = 0
    for index in range(HEALTH_OFFSET, HEALTH_OFFSET + HEALTH_ENTRIES * HEALTH_FIELDS,
                       HEALTH_FIELDS):  # fmt: skip
        held = words[index + KEY]
        if held not in (EMPTY, TOMBSTONE) and held not in wanted:
            words[index + KEY] = TOMBSTONE
            released += 1
    return released
