"""The upstream health table: one entry per upstream server, shared by every process.

An entry is ``HEALTH_FIELDS`` int64s: ``key`` (a 63-bit hash of the upstream name and
server URL, never the name itself), ``state``, ``streak`` and ``until_ms``, then the
server's requests in flight (see :class:`InFlight`). The master's prober writes
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
import os
import time
from collections.abc import Collection

from bext.runtime.pid import current_pid
from bext.shm.layout import HEALTH_ENTRIES, HEALTH_FIELDS, HEALTH_OFFSET, Segment
from bext.shm.locks import StripedLock

UNKNOWN = 0
UP = 1
DOWN = 2

KEY, STATE, STREAK, UNTIL_MS = range(4)
IN_FLIGHT = 4
"""Requests in flight to the server from every process: the sum of the owner cells."""
FIRST_OWNER = 8  # fields 5-7 are spare
OWNER_CELLS = HEALTH_FIELDS - FIRST_OWNER
"""Processes that can have requests in flight to one server at the same time."""
_COUNT = (1 << 32) - 1
RECOUNT_INTERVAL = 1.0
"""How often a process that finds a server full looks for counts left by dead processes."""
LOCK_REGION = 2
"""The :class:`~bext.shm.locks.StripedLock` region of the in-flight counts."""
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

    @property
    def active_down(self) -> bool:
        """Down by the prober's verdict (not by a worker's passive cool-down)."""
        words = self.words
        return words[self.index + STATE] == DOWN and words[self.index + UNTIL_MS] == 0

    @property
    def in_flight(self) -> int:
        return int(self.words[self.index + IN_FLIGHT])


class InFlight:
    """The requests in flight to one server from every worker, for ``max_conns``.

    Kept in the server's health entry: ``IN_FLIGHT`` is the total, and each of the
    ``OWNER_CELLS`` cells holds one process's share, packed as ``pid << 32 | count``. A
    process takes a cell for its first request (an empty one, or one whose count is 0) and
    goes on using it while its pid is written there. Every change happens under the entry's
    lock (POSIX record locks, :mod:`bext.shm.locks`), cell and total together; nothing is
    held across an ``await``.

    A worker that dies with requests in flight (killed by the stuck-worker check or a drain
    deadline, crashed) leaves its cell behind, naming a pid that no longer exists. Nobody
    has to notice at once: a leftover count only matters once the server looks full, and
    then (at most once per ``RECOUNT_INTERVAL`` in each process) :meth:`take` drops the cells
    of dead pids (``kill(pid, 0)``) and recomputes the total from the cells that remain. The
    same recount repairs a total left wrong by a process killed between its two stores: the
    total moves first on the way up and last on the way down, so it can only be too high,
    which is the safe side and makes the server look full, which triggers the recount.

    A process finds no cell when ``OWNER_CELLS`` other live processes all have requests in
    flight to this server; it then waits as if the server were full (never over the limit).
    """

    __slots__ = ("_cell", "_checked", "_index", "_key", "_lock", "_words")

    def __init__(self, entry: HealthEntry, lock: StripedLock) -> None:
        self._words = entry.words
        self._index = entry.index
        self._key = int(entry.words[entry.index + KEY])
        self._lock = lock
        self._cell = -1
        self._checked = 0.0

    @property
    def count(self) -> int:
        """The total, read without the lock (for a waiter deciding whether to try)."""
        return int(self._words[self._index + IN_FLIGHT])

    def take(self, limit: int) -> bool:
        """Count one more request if fewer than ``limit`` are in flight; True if counted."""
        words = self._words
        index = self._index
        recount = False
        if words[index + IN_FLIGHT] >= limit:
            now = time.monotonic()
            if now - self._checked < RECOUNT_INTERVAL:
                return False
            self._checked = now
            recount = True
        pid = current_pid()  # take and give_back run for every request with max_conns
        with self._lock.hold(index):
            if words[index + KEY] != self._key:
                return True  # released by a reload while this worker drains: not counted
            if recount:
                self._recount()
            if words[index + IN_FLIGHT] >= limit:
                return False
            cell = self._own_cell(pid)
            if cell < 0:
                return False
            words[index + IN_FLIGHT] += 1
            words[cell] += 1
        return True

    def give_back(self) -> None:
        """One request counted by :meth:`take` in this process has ended."""
        words = self._words
        index = self._index
        pid = current_pid()
        with self._lock.hold(index):
            cell = self._cell
            if cell < 0 or words[index + KEY] != self._key:
                return
            value = words[cell]
            if value >> 32 != pid or not value & _COUNT:
                return
            words[cell] = value - 1
            if words[index + IN_FLIGHT] > 0:
                words[index + IN_FLIGHT] -= 1

    def _own_cell(self, pid: int) -> int:
        """This process's cell (claimed if need be), or -1 if none is free. Under the lock."""
        words = self._words
        cell = self._cell
        if cell >= 0 and words[cell] >> 32 == pid:
            return cell
        first = self._index + FIRST_OWNER
        free = -1
        for candidate in range(first, first + OWNER_CELLS):
            value = words[candidate]
            if value >> 32 == pid:
                # Not the cell this process has been using, yet it names this pid: left by
                # an earlier process with the same pid. Its count is not ours to keep.
                words[self._index + IN_FLIGHT] -= value & _COUNT
                words[candidate] = pid << 32
                self._cell = candidate
                return candidate
            if free < 0 and not value & _COUNT:
                free = candidate
        if free < 0:
            self._recount()
            free = next((c for c in range(first, first + OWNER_CELLS) if not words[c] & _COUNT),
                        -1)  # fmt: skip
            if free < 0:
                return -1
        words[free] = pid << 32
        self._cell = free
        return free

    def _recount(self) -> None:
        """Drop the counts of dead processes; the total becomes the sum of the rest."""
        words = self._words
        first = self._index + FIRST_OWNER
        total = 0
        for cell in range(first, first + OWNER_CELLS):
            value = words[cell]
            count = value & _COUNT
            if not count:
                continue
            if not _alive(value >> 32):
                words[cell] = 0
                continue
            total += count
        words[self._index + IN_FLIGHT] = total


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


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
    for field in range(1, HEALTH_FIELDS):  # no state, no counts left by the entry's last user
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
