"""The cache under a real master: shared by both workers, kept across reloads and binary
upgrades, intact after a worker is killed in the middle of a fill, counted in
``bext status``, and logged.

The origin is scripted (tests/support/origin.py) so that each test controls the exact
fields; the Django behaviours are in test_cache_django.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bext.cache.store import Store
from tests.support.origin import Answer, Origin, cache_config
from tests.support.server import BextProcess, bext_cli

Start = Callable[..., BextProcess]
PUBLIC = ("Cache-Control", "public, max-age=300")


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


def fresh_get(server: BextProcess, path: str, **kwargs: object) -> httpx.Response:
    """One request on a new connection (so that the kernel spreads them over workers)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        return client.get(path, **kwargs)  # type: ignore[arg-type]


def test_one_miss_then_hits_on_every_worker(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    origin.fixed("/page", b"the page\n", PUBLIC, ("Content-Type", "text/html"))
    server = start_bext(cache_config(origin, tmp_path / "store", access="stdout"))
    first = fresh_get(server, "/page")
    assert first.headers["cache-status"] == "bext;fwd=uri-miss;fwd-status=200;stored"
    for _ in range(40):
        response = fresh_get(server, "/page")
        assert response.text == "the page\n"
        assert response.headers["cache-status"].startswith("bext;hit;ttl=")
        assert int(response.headers["age"]) >= 0
    assert origin.count["/page"] == 1
    status = json.loads(bext_cli(server, "status", "--json").stdout)
    counters = status["counters"]
    assert counters["cache_hit"] == 40 and counters["cache_miss"] == 1
    assert counters["cache_stored"] == 1
    assert "cache: hit 40, miss 1" in bext_cli(server, "status").stdout
    # Both workers answered hits: each counted some in its own slot block.
    pids = {worker["pid"] for worker in status["workers"]}
    assert len(pids) == 2
    server.stop()
    assert server.stdout().count("cache=HIT") == 40


def test_the_cache_survives_a_reload_and_a_binary_upgrade(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    origin.fixed("/kept", b"kept\n", PUBLIC, ("Cache-Tag", "kept"))
    server = start_bext(cache_config(origin, tmp_path / "store"))
    fresh_get(server, "/kept")
    assert bext_cli(server, "reload").returncode == 0
    assert fresh_get(server, "/kept").headers["cache-status"].startswith("bext;hit")
    old_master = server.pid
    upgraded = bext_cli(server, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    server.wait_for_log(rf"master {old_master} exiting", timeout=40)
    assert fresh_get(server, "/kept").headers["cache-status"].startswith("bext;hit")
    assert origin.count["/kept"] == 1
    # The tag generations live in the segment the new master inherited.
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/__bext/cache/invalidate", json={"tags": ["kept"]}).json()["ok"]
    assert "uri-miss" in fresh_get(server, "/kept").headers["cache-status"]
    assert origin.count["/kept"] == 2
    assert bext_cli(server, "stop").returncode == 0


def test_a_worker_killed_in_the_middle_of_a_fill_leaves_no_broken_entry(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    body = os.urandom(4 << 20)
    digest = hashlib.sha256(body).hexdigest()
    slow = [True]

    def large(request: object) -> Answer:
        if slow[0]:
            return Answer(200, [PUBLIC], body, pieces=40, piece_delay=0.05)
        return Answer(200, [PUBLIC], body)

    origin.route("/large", large)
    store_path = tmp_path / "store"
    server = start_bext(cache_config(origin, store_path, workers=1))
    worker = server.worker_pids()[0]
    received = threading.Event()

    def download() -> None:
        try:
            with (
                httpx.Client(base_url=server.base_url, timeout=30) as client,
                client.stream("GET", "/large") as response,
            ):
                for _ in response.iter_bytes():
                    received.set()
        except httpx.HTTPError:
            pass  # the worker died under it

    thread = threading.Thread(target=download)
    thread.start()
    assert received.wait(10)
    time.sleep(0.3)  # well inside the 2 s body
    os.kill(worker, signal.SIGKILL)
    thread.join(30)
    server.wait_for_log(rf"pid {worker}\) killed by signal 9; respawning")
    slow[0] = False
    refetched = fresh_get(server, "/large")
    assert hashlib.sha256(refetched.content).hexdigest() == digest
    hit = fresh_get(server, "/large")
    assert hit.headers["cache-status"].startswith("bext;hit")
    assert hashlib.sha256(hit.content).hexdigest() == digest
    server.stop()
    # What is on disk is the complete entry and nothing half-written beside it.
    with Store(store_path, 1 << 30, 1 << 30) as store:
        assert store.stats().entries == 1
        assert store.sweep_orphans(min_age=0) == 0
    leftovers = [p for p in store_path.rglob("*") if p.is_file() and ".tmp." in p.name]
    assert leftovers == []


def test_concurrent_misses_on_two_workers_reach_the_origin_once(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    origin.route("/slow", lambda request: Answer(200, [PUBLIC], b"slow\n", delay=0.5))
    server = start_bext(cache_config(origin, tmp_path / "store"))
    results: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        response = fresh_get(server, "/slow")
        with lock:
            results.append(f"{response.status_code} {response.text.strip()}")

    threads = [threading.Thread(target=client) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == ["200 slow"] * 30
    assert origin.count["/slow"] == 1


def test_a_bad_cache_path_refuses_the_reload_and_keeps_serving(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    origin.fixed("/page", b"page\n", PUBLIC)
    server = start_bext(cache_config(origin, tmp_path / "store"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server.config_path.write_text(cache_config(origin, blocker / "store"))
    result = bext_cli(server, "reload")
    assert result.returncode == 78
    assert "cache.path" in result.stderr + result.stdout
    assert fresh_get(server, "/page").status_code == 200


def test_an_entry_stored_over_http1_is_a_hit_over_http2(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    origin.fixed("/both", b"0123456789", PUBLIC, ("ETag", '"b1"'))
    server = start_bext(cache_config(origin, tmp_path / "store"))
    assert "stored" in fresh_get(server, "/both").headers["cache-status"]

    def h2(*args: str) -> str:
        result = subprocess.run(
            ["curl", "-s", "--http2-prior-knowledge", "-D", "-", *args,
             f"{server.base_url}/both"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        return result.stdout

    full = h2()
    assert full.startswith("HTTP/2 200") and "cache-status: bext;hit;ttl=" in full
    assert full.endswith("0123456789")
    ranged = h2("-H", "Range: bytes=2-4")
    assert ranged.startswith("HTTP/2 206") and ranged.endswith("234")
    assert h2("-H", 'If-None-Match: "b1"').startswith("HTTP/2 304")
    assert origin.count["/both"] == 1
