"""The shared GCRA table: nginx ``limit_req burst=N nodelay`` semantics, exact across
processes (forked children stand in for workers)."""

from __future__ import annotations

from bext.limits.keys import KeyHasher
from bext.limits.rate import PARTITIONS, PER_PARTITION, WINDOW, RateTable
from bext.shm.layout import Segment
from tests.support.forking import run_forked

SECOND = 1_000_000_000
MINUTE = 60 * SECOND


def test_a_new_key_gets_burst_plus_one_then_one_per_interval() -> None:
    table = RateTable(Segment())
    now = 1000 * SECOND
    allowed = [table.take(7, now, MINUTE, 4 * MINUTE) for _ in range(8)]
    assert allowed[:5] == [0] * 5
    assert allowed[5:] == [MINUTE] * 3  # the next one passes a minute from now
    assert table.take(7, now + MINUTE - 1, MINUTE, 4 * MINUTE) == 1
    assert table.take(7, now + MINUTE, MINUTE, 4 * MINUTE) == 0
    assert table.take(7, now + MINUTE, MINUTE, 4 * MINUTE) == MINUTE
    # a long quiet spell refills the burst, never more
    later = now + 60 * MINUTE
    assert [table.take(7, later, MINUTE, 4 * MINUTE) for _ in range(6)] == [0] * 5 + [MINUTE]


def test_refused_requests_do_not_push_the_next_allowed_one_back() -> None:
    table = RateTable(None)  # a private table: same algorithm
    now = 50 * SECOND
    assert table.take(9, now, SECOND, 0) == 0
    for _ in range(100):
        assert table.take(9, now, SECOND, 0) == SECOND
    assert table.take(9, now + SECOND, SECOND, 0) == 0


def test_keys_and_limits_are_separate_buckets() -> None:
    table = RateTable(Segment())
    login, api = KeyHasher("login"), KeyHasher("api")
    alice = login(b"a\x00192.0.2.1")
    bob = login(b"a\x00192.0.2.2")
    assert alice != bob and alice != api(b"a\x00192.0.2.1")
    now = 5 * SECOND
    assert table.take(alice, now, SECOND, 0) == 0
    assert table.take(alice, now, SECOND, 0) > 0
    assert table.take(bob, now, SECOND, 0) == 0
    assert table.take(api(b"a\x00192.0.2.1"), now, SECOND, 0) == 0


def test_a_crowded_window_reuses_expired_buckets_then_evicts_the_soonest_free() -> None:
    table = RateTable(Segment())
    # WINDOW + 1 keys with the same partition and home slot
    keys = [(n * PER_PARTITION * PARTITIONS + 3) or 1 for n in range(1, WINDOW + 2)]
    assert len({key % PARTITIONS for key in keys}) == 1
    now = 10 * SECOND
    for key in keys[:WINDOW]:
        assert table.take(key, now, MINUTE, 0) == 0
    # the window is full of live buckets: the newcomer takes over the soonest to expire
    assert table.take(keys[WINDOW], now, MINUTE, 0) == 0
    assert table.take(keys[WINDOW], now, MINUTE, 0) == MINUTE
    # once they expire, every key finds room again and is limited exactly
    later = now + 2 * MINUTE
    for key in keys:
        assert table.take(key, later, MINUTE, 0) == 0
        assert table.take(key, later, MINUTE, 0) == MINUTE


def test_forked_workers_share_one_decision_per_key() -> None:
    """Four processes hammer one key at the same instant: exactly burst + 1 pass."""
    segment = Segment()
    table = RateTable(segment)
    now = 100 * SECOND
    burst, children, tries = 9, 4, 200

    def work(_: int) -> int:
        return sum(table.take(42, now, MINUTE, burst * MINUTE) == 0 for _ in range(tries))

    passed = sum(result or 0 for _, result in run_forked(children, work))
    assert passed == burst + 1
