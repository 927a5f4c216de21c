"""The one place that defines the shared segment's layout (ARCHITECTURE.md, decision 7).

The master creates the segment (a memfd, so a binary upgrade can pass it on) before it
forks anything and keeps it for its whole life, across reloads. Everything in it is a
signed 64-bit integer; names never go in, only indexes and hashed ids.

    header          16 x int64  magic, version, slot blocks, fields per block, table sizes,
                                then the master's own counters (Header: reloads, restarts)
    slot blocks     MAX_SLOTS x 2 blocks x FIELDS x int64
                    one writer per block: worker slot i of an even generation writes
                    block 2i, of an odd generation block 2i+1, so during a reload the
                    old and the new worker of a slot never share a block
    upstream health HEALTH_ENTRIES x 64 x int64 (id hash, state, streak, changed_ms,
                    requests in flight, then per-process in-flight cells: shm/health.py)
    cache tags      TAG_ENTRIES x int64 generations (bext/shm/tags.py)
    rate limits     RATE_ENTRIES x 2 x int64 (key hash, theoretical arrival time in ns):
                    one GCRA bucket per limit and key (bext/limits/rate.py)
    client conns    PEER_ENTRIES x 3 x int64 (address hash, owner pid, open connections):
                    max_connections_per_ip, one entry per address and worker
                    (bext/shm/peers.py); the master clears a dead worker's entries
    cache fills     FILL_ENTRIES x 3 x int64 (key hash, owner pid, expiry ms): which
                    worker is fetching a missing cache entry (bext/shm/fills.py)
    entry versions  VERSION_ENTRIES x int64: bumped when a stored entry changes, so that
                    workers' memory tiers notice (bext/shm/versions.py)
    metrics         BLOCKS x METRIC_FIELDS x int64: labelled counters and histograms,
                    one writer per block like the slot blocks (bext/shm/metrics.py)

The rate and client tables are split into 256 partitions, each guarded by one stripe of a
``StripedLock`` (region 0: rate limits, region 1: client connections; region 2 guards the
upstream in-flight counts of the health table, region 3 the cache tag generations, region
4 the cache fill table, region 5 the entry versions).
"""

from __future__ import annotations

import enum
import mmap
import os

MAGIC = 0x4245585453484D31  # "BEXTSHM1"
VERSION = 3
MAX_SLOTS = 256
HEALTH_ENTRIES = 1024
TAG_ENTRIES = 65536
RATE_ENTRIES = 65536
HEADER_FIELDS = 16


class Header(enum.IntEnum):
    """The master's own counters in the header (one writer: the master of the day)."""

    RELOADS = 8  # generations that went live after a reload
    WORKER_RESTARTS = 9  # workers respawned after an unplanned exit


class Field(enum.IntEnum):
    """The int64 fields of one slot block."""

    PID = 0
    GENERATION = 1
    HEARTBEAT_MS = 2  # CLOCK_MONOTONIC milliseconds, system-wide, so comparable
    REQUESTS = 3
    STATUS_1XX = 4
    STATUS_2XX = 5
    STATUS_3XX = 6
    STATUS_4XX = 7
    STATUS_5XX = 8
    BYTES_IN = 9
    BYTES_OUT = 10
    OPEN_CONNECTIONS = 11
    UPSTREAM_ERRORS = 12
    RATE_LIMITED = 13  # requests answered 429 by a [limits.NAME] rule
    CONNECTIONS_REFUSED = 14  # closed at once: server.max_connections_per_ip
    CACHE_HIT = 15  # served from the cache (fresh, or stale where allowed)
    CACHE_MISS = 16  # nothing stored: forwarded
    CACHE_STALE = 17  # served stale (stale-while-revalidate, stale-if-error, soft purge)
    CACHE_BYPASS = 18  # went through a cached route without a lookup (method, Authorization)
    CACHE_STORED = 19  # responses stored
    CACHE_REVALIDATED = 20  # a stored response validated with the upstream (304)
    WAF_INSPECTED = 21  # requests the WAF ran through ModSecurity
    WAF_BLOCKED = 22  # answered 403 (or 400) by the WAF
    WAF_DETECTED = 23  # matched rules without being blocked (detect mode, or under threshold)


FIELDS = 32  # room to add counters without moving the tables behind them
BLOCKS = MAX_SLOTS * 2
HEALTH_FIELDS = 64

SLOTS_OFFSET = HEADER_FIELDS
HEALTH_OFFSET = SLOTS_OFFSET + BLOCKS * FIELDS
TAGS_OFFSET = HEALTH_OFFSET + HEALTH_ENTRIES * HEALTH_FIELDS
RATE_OFFSET = TAGS_OFFSET + TAG_ENTRIES
RATE_FIELDS = 2
PEER_ENTRIES = 65536
PEER_FIELDS = 3
PEER_OFFSET = RATE_OFFSET + RATE_ENTRIES * RATE_FIELDS
FILL_ENTRIES = 4096
FILL_FIELDS = 3
FILL_OFFSET = PEER_OFFSET + PEER_ENTRIES * PEER_FIELDS
VERSION_ENTRIES = 65536
VERSIONS_OFFSET = FILL_OFFSET + FILL_ENTRIES * FILL_FIELDS
METRIC_FIELDS = 1024
METRICS_OFFSET = VERSIONS_OFFSET + VERSION_ENTRIES
TOTAL_FIELDS = METRICS_OFFSET + BLOCKS * METRIC_FIELDS
SIZE = TOTAL_FIELDS * 8


def block_index(slot: int, generation: int) -> int:
    return slot * 2 + (generation & 1)


def field_index(block: int, field: int) -> int:
    return SLOTS_OFFSET + block * FIELDS + field


class Segment:
    """The mapped segment as an int64 array (``memoryview`` cast to ``q``)."""

    def __init__(self, fd: int | None = None) -> None:
        created = fd is None
        if fd is None:
            fd = os.memfd_create("bext-shm", 0)  # not CLOEXEC: a binary upgrade passes it on
            os.ftruncate(fd, SIZE)
        self.fd = fd
        self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.words = memoryview(self._map).cast("q")
        if created:
            header = (MAGIC, VERSION, BLOCKS, FIELDS, HEALTH_ENTRIES, TAG_ENTRIES, RATE_ENTRIES)
            for index, value in enumerate(header):
                self.words[index] = value
        elif self.words[0] != MAGIC or self.words[1] != VERSION:
            raise ValueError("shared memory segment has an unknown layout")

    def sum(self, field: int) -> int:
        """A counter summed over every slot block (what operators see)."""
        words = self.words
        return sum(words[field_index(block, field)] for block in range(BLOCKS))
