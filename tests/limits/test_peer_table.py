"""Open connections per client address in shared memory: counted per worker, summed per
address, released on close, and dropped whole when a worker dies."""

from __future__ import annotations

import os

from bext.shm.layout import PEER_ENTRIES, PEER_FIELDS, PEER_OFFSET, Segment
from bext.shm.peers import (
    ADMITTED,
    PARTITIONS,
    PER_PARTITION,
    REFUSED,
    UNTRACKED,
    WINDOW,
    PeerTable,
    peer_key,
    release_owner,
)
from tests.support.forking import run_forked


def used_entries(segment: Segment) -> int:
    keys = segment.words[PEER_OFFSET : PEER_OFFSET + PEER_ENTRIES * PEER_FIELDS : PEER_FIELDS]
    return sum(1 for key in keys.tolist() if key != 0)


def test_the_limit_counts_every_worker_together() -> None:
    segment = Segment()
    one, two = PeerTable(segment, 101), PeerTable(segment, 102)
    key = peer_key("192.0.2.7")
    assert one.acquire(key, 3) == ADMITTED
    assert two.acquire(key, 3) == ADMITTED
    assert one.acquire(key, 3) == ADMITTED
    assert two.acquire(key, 3) == REFUSED
    assert one.acquire(key, 3) == REFUSED
    assert one.total(key) == 3
    two.release(key)
    assert one.acquire(key, 3) == ADMITTED
    assert two.acquire(peer_key("192.0.2.8"), 3) == ADMITTED  # another address


def test_released_entries_leave_the_table_empty() -> None:
    segment = Segment()
    table = PeerTable(segment, 7)
    keys = [peer_key(f"10.0.{n // 256}.{n % 256}") for n in range(2000)]
    for key in keys:
        assert table.acquire(key, 5) == ADMITTED
        assert table.acquire(key, 5) == ADMITTED
    for key in reversed(keys[::2]):
        table.release(key)
        table.release(key)
    for key in keys[1::2]:
        table.release(key)
        table.release(key)
    assert used_entries(segment) == 0  # no tombstones left behind
    assert all(table.total(key) == 0 for key in keys[:50])


def test_a_dead_workers_connections_stop_counting() -> None:
    segment = Segment()
    live, dead = PeerTable(segment, 201), PeerTable(segment, 202)
    key = peer_key("2001:db8::1")
    assert live.acquire(key, 2) == ADMITTED
    assert dead.acquire(key, 2) == ADMITTED
    assert dead.acquire(peer_key("192.0.2.1"), 2) == ADMITTED
    assert live.acquire(key, 2) == REFUSED
    assert release_owner(segment, 202) == 2  # the master reaps pid 202
    assert live.total(key) == 1
    assert live.acquire(key, 2) == ADMITTED
    assert release_owner(segment, 202) == 0
    live.release(key)
    live.release(key)
    assert used_entries(segment) == 0


def test_a_crowded_window_admits_uncounted_rather_than_refusing() -> None:
    segment = Segment()
    table = PeerTable(segment, 9)
    # keys with the same partition and home slot: WINDOW of them fill the window
    keys = [(n * PER_PARTITION * PARTITIONS + 5) for n in range(1, WINDOW + 2)]
    for key in keys[:WINDOW]:
        assert table.acquire(key, 1) == ADMITTED
    assert table.acquire(keys[WINDOW], 1) == UNTRACKED
    assert table.acquire(keys[0], 1) == REFUSED


def test_forked_workers_never_exceed_the_limit() -> None:
    """Four processes race for one address's 10 slots: exactly 10 are taken."""
    segment = Segment()
    key = peer_key("198.51.100.1")

    def work(_: int) -> int:
        table = PeerTable(segment, os.getpid())
        return sum(table.acquire(key, 10) == ADMITTED for _ in range(50))

    children = run_forked(4, work)
    pids = [pid for pid, _ in children]
    taken = sum(result or 0 for _, result in children)
    assert taken == 10
    assert PeerTable(segment, 1).total(key) == 10
    for pid in pids:
        release_owner(segment, pid)
    assert PeerTable(segment, 1).total(key) == 0
