"""Cache tag generations in the shared segment (bext/shm/tags.py)."""

from __future__ import annotations

import os

import pytest

from bext.shm.layout import TAG_ENTRIES, TAGS_OFFSET, Segment
from bext.shm.tags import ALL, FRESH, HARD, SOFT, SOFT_BITS, TagTable, tag_hash
from tests.support.forking import fork, run_forked, wait_all


def test_basic_generation_and_invalidate() -> None:
    table = TagTable(Segment())
    assert table.generation(b"products") == 0
    stored = table.snapshot([b"products", b"users"])
    assert stored == ((ALL, 0), (b"products", 0), (b"users", 0))
    assert table.fresh(stored)
    table.invalidate([b"products"])
    assert table.generation(b"products") == 1
    assert table.generation(b"users") == 0
    assert not table.fresh(stored)
    assert table.fresh(table.snapshot([b"products", b"users"]))
    assert table.generations([b"products", b"users", b"products"]) == (1, 0, 1)


def test_invalidate_counts_a_repeated_tag_once() -> None:
    table = TagTable(Segment())
    table.invalidate([b"a", b"a", b"a"])
    assert table.generation(b"a") == 1


def test_an_entry_without_tags_is_fresh_until_purge_all() -> None:
    table = TagTable(Segment())
    stored = table.snapshot([])
    assert stored == ((ALL, 0),)
    table.invalidate([b"x"])
    assert table.fresh(stored)
    table.invalidate_all()
    assert not table.fresh(stored)


def test_tag_hash_is_a_signed_int64() -> None:
    for tag in (b"", b"a", b"products", bytes(range(256))):
        value = tag_hash(tag)
        assert -(1 << 63) <= value < 1 << 63
    assert tag_hash(b"a") == tag_hash(b"a") != tag_hash(b"b")


def test_many_tags_only_the_invalidated_ones_change() -> None:
    table = TagTable(Segment())
    tags = [f"model:{i}".encode() for i in range(5000)]
    stored = {tag: table.snapshot([tag]) for tag in tags}
    victims = set(tags[::7])
    table.invalidate(victims)
    victim_slots = {table.slot(tag) for tag in victims}
    for tag in tags:
        if tag in victims:
            assert not table.fresh(stored[tag])
        elif table.slot(tag) not in victim_slots:
            assert table.fresh(stored[tag])
    # With 65535 words, 5000 tags rarely collide: nearly all survivors stay fresh.
    survivors = [tag for tag in tags if tag not in victims]
    assert sum(table.fresh(stored[tag]) for tag in survivors) > 0.9 * len(survivors)


def test_the_region_is_not_overrun() -> None:
    segment = Segment()
    table = TagTable(segment)
    for i in range(20000):
        table.invalidate([str(i).encode()])
    table.invalidate_all()
    slots = {table.slot(str(i).encode()) for i in range(20000)}
    assert 0 not in slots and 1 not in slots  # the global generation, the sequence
    assert max(slots) < TAG_ENTRIES
    assert segment.words[TAGS_OFFSET + TAG_ENTRIES] == 0  # first rate-limit word untouched
    assert segment.words[TAGS_OFFSET - 1] == 0  # last health word untouched
    total = sum(segment.words[TAGS_OFFSET + 2 : TAGS_OFFSET + TAG_ENTRIES]) >> SOFT_BITS
    assert total == 20000
    assert table.all_generation() == 1
    assert table.sequence() == 20000 + 1


def test_colliding_tags_share_a_generation() -> None:
    table = TagTable(Segment(), entries=3)  # one tag word: every tag collides
    first, second = b"products", b"users"
    assert table.slot(first) == table.slot(second) == 2
    stored = table.snapshot([second])
    table.invalidate([first])
    assert not table.fresh(stored)  # an extra miss, never a stale hit
    assert table.generation(second) == 1
    table.invalidate([first, second])  # one shared word, incremented once
    assert table.generation(first) == 2
    assert table.all_generation() == 0  # the global word is never a tag's slot


def test_small_table_collisions_never_leave_an_invalidated_entry_fresh() -> None:
    table = TagTable(Segment(), entries=17)
    tags = [f"t{i}".encode() for i in range(200)]
    stored = {tag: table.snapshot([tag]) for tag in tags}
    table.invalidate(tags[:50])
    for tag in tags[:50]:
        assert not table.fresh(stored[tag])
    assert {table.slot(tag) for tag in tags} <= set(range(2, 17))


@pytest.mark.parametrize("entries", [0, 1, 2, TAG_ENTRIES + 1])
def test_table_size_is_bounded_by_the_region(entries: int) -> None:
    with pytest.raises(ValueError):
        TagTable(Segment(), entries=entries)


def test_invalidate_all() -> None:
    table = TagTable(Segment())
    stored = table.snapshot([b"a", b"b"])
    assert table.all_generation() == 0
    table.invalidate_all()
    assert table.all_generation() == 1
    assert table.generation(ALL) == 1
    assert not table.fresh(stored)
    assert table.generations([b"a", b"b"]) == (0, 0)  # tag words are untouched
    assert table.fresh(table.snapshot([b"a", b"b"]))


def test_invalidation_is_seen_by_a_forked_process_and_the_other_way() -> None:
    segment = Segment()
    table = TagTable(segment)
    stored = table.snapshot([b"products"])
    read_fd, write_fd = os.pipe()

    def child() -> None:
        os.close(write_fd)
        os.read(read_fd, 1)  # wait for the parent's invalidation
        child = TagTable(Segment(segment.fd))  # as a worker maps the inherited fd
        if not child.fresh(stored) and child.generation(b"products") == 1:
            child.invalidate([b"users"])
            child.invalidate_all()
        else:
            raise RuntimeError("the child did not see the parent's invalidation")

    pid = fork(child)
    os.close(read_fd)
    table.invalidate([b"products"])
    os.write(write_fd, b"x")
    os.close(write_fd)
    wait_all([pid])
    assert table.generation(b"users") == 1
    assert table.all_generation() == 1


def test_concurrent_invalidations_from_four_processes_lose_no_increment() -> None:
    segment = Segment()
    table = TagTable(segment)
    per_child, children = 1500, 4

    def work(n: int) -> None:
        for i in range(per_child):
            table.invalidate([b"hot", f"own{n}".encode()])
            if i % 3 == 0:
                table.invalidate_all()
            os.sched_yield()

    run_forked(children, work)
    own = [f"own{n}".encode() for n in range(children)]
    assert len({table.slot(tag) for tag in [b"hot", *own]}) == children + 1  # no collision
    assert table.generation(b"hot") == per_child * children
    assert table.generations(own) == (per_child,) * children
    assert table.all_generation() == children * len(range(0, per_child, 3))


def test_generation_wraps_within_int64() -> None:
    segment = Segment()
    table = TagTable(segment)
    segment.words[TAGS_OFFSET + table.slot(b"a")] = (1 << 63) - 1  # soft bits all set too
    table.invalidate([b"a"])
    assert table.generation(b"a") == -(1 << (63 - SOFT_BITS))
    table.invalidate([b"a"], soft=True)
    assert table.generation(b"a") == -(1 << (63 - SOFT_BITS))


def test_soft_invalidation_is_told_apart_from_hard() -> None:
    table = TagTable(Segment())
    stored = table.snapshot([b"products"])
    assert table.state(stored) == FRESH
    table.invalidate([b"products"], soft=True)
    assert table.state(stored) == SOFT
    assert not table.fresh(stored)
    assert table.generation(b"products") == 0  # soft invalidations are not counted there
    refreshed = table.snapshot([b"products"])
    assert table.state(refreshed) == FRESH
    table.invalidate([b"products"])
    assert table.state(stored) == HARD
    assert table.state(refreshed) == HARD
    assert table.generation(b"products") == 1
    again = table.snapshot([b"products"])
    table.invalidate_all(soft=True)
    assert table.state(again) == SOFT
    table.invalidate_all()
    assert table.state(again) == HARD
    assert table.all_generation() == 1


def test_stamp_and_check_by_slot() -> None:
    table = TagTable(Segment())
    stamp = table.stamp([b"a", b"b", b"a"])
    assert [slot for slot, _ in stamp] == [0, table.slot(b"a"), table.slot(b"b")]
    assert table.check(stamp) == FRESH
    table.invalidate([b"b"], soft=True)
    assert table.check(stamp) == SOFT
    table.invalidate([b"a"])
    assert table.check(stamp) == HARD
    assert table.check(((TAG_ENTRIES + 5, 0),)) == HARD  # a slot this table does not have
