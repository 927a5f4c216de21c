"""Requests in flight per upstream server, shared by processes (max_conns)."""

from __future__ import annotations

from bext.shm.health import (
    FIRST_OWNER,
    IN_FLIGHT,
    LOCK_REGION,
    OWNER_CELLS,
    HealthEntry,
    InFlight,
    retain,
    server_key,
)
from bext.shm.layout import HEALTH_ENTRIES, Segment
from bext.shm.locks import StripedLock
from tests.support.forking import run_forked

KEY = server_key("app", "http://127.0.0.1:8000")


def in_flight(segment: Segment, key: int = KEY) -> InFlight:
    return InFlight(HealthEntry(segment, key), StripedLock(segment, LOCK_REGION))


def test_forked_workers_never_exceed_the_limit_together() -> None:
    segment = Segment()
    slots = in_flight(segment)  # built before the fork, as the master builds the pipeline
    total = HealthEntry(segment, KEY).index + IN_FLIGHT

    def work(_: int) -> None:
        held = 0
        for _ in range(2000):
            if held < 3 and slots.take(3):
                held += 1
                assert segment.words[total] <= 3, segment.words[total]
            elif held:
                slots.give_back()
                held -= 1
        for _ in range(held):
            slots.give_back()

    run_forked(4, work)
    assert slots.count == 0


def test_a_dead_workers_count_is_dropped_when_the_server_looks_full() -> None:
    segment = Segment()
    slots = in_flight(segment)

    def die_holding_two(_: int) -> None:
        assert slots.take(2) and slots.take(2)  # and never given back: killed

    run_forked(1, die_holding_two)
    assert slots.count == 2  # nobody noticed yet, and nothing needed to
    assert slots.take(2)  # full: the dead pid's cell is dropped, then one is taken
    assert slots.count == 1
    slots.give_back()
    assert slots.count == 0


def test_a_total_left_too_high_is_recounted_from_the_cells() -> None:
    segment = Segment()
    slots = in_flight(segment)
    entry = HealthEntry(segment, KEY)
    assert slots.take(1)
    segment.words[entry.index + IN_FLIGHT] += 1  # a process killed between its two stores
    assert slots.take(2)  # looks full; the recount finds 1 really in flight
    assert slots.count == 2
    slots.give_back()
    slots.give_back()
    assert slots.count == 0


def test_no_free_cell_means_no_room_never_an_uncounted_request() -> None:
    segment = Segment()
    slots = in_flight(segment)
    entry = HealthEntry(segment, KEY)
    for cell in range(OWNER_CELLS):  # every cell held by a live process (pid 1)
        segment.words[entry.index + FIRST_OWNER + cell] = 1 << 32 | 1
    segment.words[entry.index + IN_FLIGHT] = OWNER_CELLS
    assert not slots.take(1000)
    assert slots.count == OWNER_CELLS


def test_a_released_entry_is_reused_with_no_counts_and_stale_releases_are_ignored() -> None:
    segment = Segment()
    slots = in_flight(segment)
    assert slots.take(5)
    index = HealthEntry(segment, KEY).index
    retain(segment, set())  # a reload dropped this server while a request was in flight
    reused = HealthEntry(segment, KEY + HEALTH_ENTRIES)  # same home entry: takes it over
    assert reused.index == index
    assert reused.in_flight == 0
    assert slots.take(5)  # the old worker's counter: the entry is not its server's any more
    assert reused.in_flight == 0
    slots.give_back()  # the old worker's request ends: it must not touch the new server
    assert reused.in_flight == 0
