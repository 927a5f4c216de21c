"""The per-worker memory tier: bounded, and never serving a copy another worker retired.

Two :class:`ResponseCache` objects on one shared segment and one store stand for two
workers (LMDB opens an environment once per process, so they share the opened store; each
keeps its own memory tier, as each worker does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bext.cache.engine import ResponseCache
from bext.cache.memory import Held, MemoryTier
from bext.cache.purge import parse_body
from bext.cache.store import EntryMeta, StoredResponse
from bext.cache.vary import SecondaryKey
from bext.config.schema import CacheConfig
from bext.shm.counters import NullCounters
from bext.shm.layout import Segment

KEY = b"/page\x00example.com\x00https"
HEADERS = [(b"Cache-Control", b"public, max-age=60")]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[ResponseCache, ResponseCache]]:
    segment = Segment()
    config = CacheConfig(enabled=True, path=tmp_path / "store", max_size=64 << 20)
    one, two = ResponseCache(config, segment), ResponseCache(config, segment)
    one.bind(NullCounters(), os.getpid())
    two.store = one.store
    two.ready = True
    yield one, two
    one.close()


def store(cache: ResponseCache, body: bytes) -> None:
    meta = EntryMeta(200, HEADERS, 1.0, 1.0, (), cache.stamp(()))
    assert cache.put(KEY, SecondaryKey(), meta, body)


def test_a_copy_is_used_until_another_worker_changes_the_entry(
    workers: tuple[ResponseCache, ResponseCache],
) -> None:
    one, two = workers
    store(one, b"v1")
    found = one.lookup(KEY, [])
    assert found is not None and found.stored.body == b"v1"
    assert len(one.memory) == 1
    again = one.lookup(KEY, [])
    assert again is not None and again.held is found.held  # the same copy, no store read
    store(two, b"v2")  # the other worker stores a new response for the key
    fresh = one.lookup(KEY, [])
    assert fresh is not None and fresh.stored.body == b"v2"
    two.purge(parse_body(b'{"urls": ["https://example.com/page"]}'))
    assert one.lookup(KEY, []) is None


def test_soft_url_purge_reaches_the_copies(workers: tuple[ResponseCache, ResponseCache]) -> None:
    one, two = workers
    store(one, b"v1")
    first = one.lookup(KEY, [])
    assert first is not None and not first.soft_purged
    two.purge(parse_body(b'{"urls": ["/page"], "soft": true}'))
    marked = one.lookup(KEY, [])
    assert marked is not None and marked.soft_purged


def test_tags_are_checked_on_every_hit_from_memory(
    workers: tuple[ResponseCache, ResponseCache],
) -> None:
    one, two = workers
    meta = EntryMeta(200, HEADERS, 1.0, 1.0, (b"t",), one.stamp((b"t",)))
    assert one.put(KEY, SecondaryKey(), meta, b"tagged")
    assert one.lookup(KEY, []) is not None
    two.purge(parse_body(b'{"tags": ["t"]}'))
    assert one.lookup(KEY, []) is None


def held(digest: str, size: int, version: int = 0) -> Held:
    stored = StoredResponse(KEY, digest, 200, [], 1.0, 1.0, (), (), SecondaryKey(), size,
                            body=b"x" * size)  # fmt: skip
    return Held(stored, 60.0, 0.0, True, [], version, 0)


def unchanged(slot: int) -> int:
    return 0


def test_the_tier_is_bounded_and_replaces_a_variant_in_place() -> None:
    tier = MemoryTier(max_bytes=10_000, max_entry=4_000)
    tier.put(b"a", held("", 3_000))
    tier.put(b"a", held("", 3_500))  # the same variant again: replaced, not added
    assert len(tier) == 1
    tier.put(b"b", held("", 3_000))
    tier.put(b"c", held("", 3_000))  # over 10,000 bytes with overheads: "a" goes first
    assert tier.get(b"a", [], unchanged) is None
    assert tier.get(b"c", [], unchanged) is not None
    assert tier.size <= 10_000
    tier.put(b"d", held("", 5_000))  # larger than max_entry: never kept
    assert tier.get(b"d", [], unchanged) is None
    assert tier.get(b"c", [], lambda slot: 1) is None  # another version: dropped
    assert tier.get(b"c", [], unchanged) is None
