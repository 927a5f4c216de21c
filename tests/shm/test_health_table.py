"""The shared upstream health table: claims, lookups past tombstones, release on reload."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bext.config import Config, ConfigError, parse_config
from bext.master.health import config_keys
from bext.shm.health import (
    DOWN,
    MAX_UPSTREAM_SERVERS,
    UP,
    HealthEntry,
    retain,
    server_key,
)
from bext.shm.layout import HEALTH_ENTRIES, Segment


@pytest.fixture
def segment() -> Segment:
    return Segment()


def colliding(n: int, home: int = 5) -> list[int]:
    """``n`` keys with the same home slot."""
    return [home + HEALTH_ENTRIES * (i + 1) for i in range(n)]


def test_every_process_finds_the_same_entry(segment: Segment) -> None:
    a, b = colliding(2)
    first, second = HealthEntry(segment, a), HealthEntry(segment, b)
    assert first.index != second.index
    first.set_state(DOWN, 3)
    again = HealthEntry(segment, a)  # as a worker looks it up after the master claimed it
    assert again.index == first.index and again.state == DOWN and not again.healthy()


def test_a_released_entry_is_skipped_by_lookups_and_reused_clean(segment: Segment) -> None:
    a, b, c, d = colliding(4)
    entries = {key: HealthEntry(segment, key) for key in (a, b, c)}
    entries[a].set_state(DOWN, 5)
    assert retain(segment, {c}) == 2
    # c sits past two tombstones on its probe path and is still found where it was.
    assert HealthEntry(segment, c).index == entries[c].index
    # A new key reuses the first tombstone, with no state left from the released server.
    reused = HealthEntry(segment, d)
    assert reused.index == entries[a].index and reused.state == 0 and reused.healthy()
    assert retain(segment, {c, d}) == 0


def test_a_full_table_is_refused_and_release_makes_room(segment: Segment) -> None:
    keys = list(range(1, HEALTH_ENTRIES + 1))
    for key in keys:
        HealthEntry(segment, key)
    with pytest.raises(RuntimeError, match="health table is full"):
        HealthEntry(segment, HEALTH_ENTRIES + 1)
    retain(segment, keys[:10])
    HealthEntry(segment, HEALTH_ENTRIES + 1)


def test_reloads_with_new_servers_every_time_never_fill_the_table(segment: Segment) -> None:
    """A deploy that moves the app server to a new port on every reload."""
    old: set[int] = set()
    for deploy in range(3 * HEALTH_ENTRIES):
        new = {server_key("django", f"http://127.0.0.1:{10000 + deploy}")}
        retain(segment, old | new)
        for key in new:
            HealthEntry(segment, key).set_state(UP, 1)
        old = new
    assert HealthEntry(segment, next(iter(old))).state == UP


def _config(*urls: str) -> Config:
    servers = ", ".join(f'"{u}"' for u in urls)
    text = (
        f'[[route_rules]]\npattern = "/**"\nproxy = "app"\n[upstreams.app]\nservers = [{servers}]\n'
    )
    return parse_config(tomllib.loads(text), base_dir=Path.cwd())


def test_a_reload_keeps_the_entries_of_both_configurations(segment: Segment) -> None:
    """What the master keeps when it builds a generation: the keys of the live
    configurations (``retain``), and nothing else."""

    def release_entries(segment: Segment, old: Config, new: Config) -> int:
        return retain(segment, config_keys(old) | config_keys(new))

    one = _config("http://127.0.0.1:8000", "http://127.0.0.1:8001")
    two = _config("http://127.0.0.1:8001", "http://127.0.0.1:8002")
    three = _config("http://127.0.0.1:8003")
    for config in (one, two):
        for key in config_keys(config):
            HealthEntry(segment, key)
    assert release_entries(segment, one, two) == 0
    assert release_entries(segment, two, three) == 1  # :8000, named by neither
    assert release_entries(segment, three, three) == 2  # :8001 and :8002 once drained


def test_config_caps_the_number_of_servers() -> None:
    urls = [f"http://127.0.0.1:{port}" for port in range(1, MAX_UPSTREAM_SERVERS + 2)]
    with pytest.raises(ConfigError) as info:
        (_config(*urls))
    assert f"upstreams: {MAX_UPSTREAM_SERVERS + 1} servers in all; at most 512" in str(info.value)
    (_config(*urls[:-1]))
