"""``bext cache purge`` against a real master: tags, URLs, prefixes, everything, soft.

The command line checks its arguments itself (usage errors, exit 2, no master needed),
then sends ``cache-purge <JSON>`` over the control socket; the master parses it again,
carries it out with the current generation's cache and replies with the counts. A
malformed control command gets an error reply and the master goes on serving.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bext.cli import EXIT_FAILURE, EXIT_USAGE, control_path
from bext.master.control import MAX_COMMAND, send_command
from tests.support.origin import Answer, Origin, cache_config
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]
TAGGED = [("Cache-Control", "public, max-age=60"), ("Cache-Tag", "products")]


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    for path in ("/page", "/pages/a", "/other"):
        server.route(path, lambda request: Answer(200, TAGGED, f"body of {request.path}".encode()))
    yield server
    server.stop()


def bext(*args: str, config_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["-c", str(config_path)] if config_path is not None else []
    return subprocess.run(
        [sys.executable, "-m", "bext", *args, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def get(server: BextProcess, path: str) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    return response


def cached(server: BextProcess, origin: Origin, *paths: str) -> None:
    """Each path fetched once (a miss) and again (a hit: the origin saw it once)."""
    for path in paths:
        get(server, path)
        hit = get(server, path)
        assert "hit" in hit.headers["cache-status"], hit.headers["cache-status"]
    assert all(origin.count[path] == 1 for path in paths), origin.count


def wait_for_count(origin: Origin, path: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while origin.count[path] < count:
        assert time.monotonic() < deadline, f"{path}: origin count {origin.count[path]}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("args", "printed", "missed", "kept"),
    [
        (["--tag", "products"], "purged: 1 tag, 0 entries", ["/page", "/pages/a"], []),
        (["--url", "/page"], "purged: 0 tags, 1 entry", ["/page"], ["/pages/a", "/other"]),
        (["--prefix", "/pa"], "purged: 0 tags, 2 entries", ["/page", "/pages/a"], ["/other"]),
        (["--all"], "purged: everything (3 entries)", ["/page", "/pages/a", "/other"], []),
    ],
    ids=["tag", "url", "prefix", "all"],
)
def test_purge_makes_the_next_request_a_miss(
    start_bext: Start,
    origin: Origin,
    tmp_path: Path,
    args: list[str],
    printed: str,
    missed: list[str],
    kept: list[str],
) -> None:
    server = start_bext(cache_config(origin, tmp_path / "store", workers=2))
    cached(server, origin, "/page", "/pages/a", "/other")
    result = bext("cache", "purge", *args, config_path=server.config_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == printed
    for path in missed:
        again = get(server, path)
        assert origin.count[path] == 2, (path, origin.count)
        assert "fwd=" in again.headers["cache-status"]
    for path in kept:
        assert "hit" in get(server, path).headers["cache-status"]
        assert origin.count[path] == 1, (path, origin.count)
    server.wait_for_log(r"cache purge: \{")


def test_soft_purge_serves_stale_once_then_refreshes(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    server = start_bext(cache_config(origin, tmp_path / "store", workers=1))
    cached(server, origin, "/page")
    result = bext("cache", "purge", "--tag", "products", "--soft", config_path=server.config_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "marked stale: 1 tag, 0 entries"
    stale = get(server, "/page")
    assert 'detail="soft-purged"' in stale.headers["cache-status"]
    assert stale.text == "body of /page"
    wait_for_count(origin, "/page", 2)  # the refresh in the background
    deadline = time.monotonic() + 10
    while True:  # once the refreshed entry is stored, a plain hit
        status = get(server, "/page").headers["cache-status"]
        if "hit" in status and "soft-purged" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert origin.count["/page"] == 2
    # a soft URL purge marks the stored entry stale: served once more, then refreshed
    result = bext("cache", "purge", "--url", "/page", "--soft", config_path=server.config_path)
    assert result.returncode == 0 and result.stdout.strip() == "marked stale: 0 tags, 1 entry"
    assert 'detail="soft-purged"' in get(server, "/page").headers["cache-status"]
    wait_for_count(origin, "/page", 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tag", ""], "tags: empty string"),
        ([], "nothing to purge"),
        (["--all", "--tag", "products"], "'all' cannot be combined"),
        (["--url", "page"], "neither a path starting with '/' nor an http(s) URL"),
        (["--tag", "two words"], "contains whitespace"),
    ],
    ids=["empty-tag", "no-target", "all-and-tag", "relative-url", "space"],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    """Checked before any master is asked: none runs for this config."""
    result = bext("cache", "purge", *args, config_path=tmp_path / "none.toml")
    assert result.returncode == EXIT_USAGE, result
    assert result.stderr.startswith("bext cache purge: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cache_without_a_verb_is_a_usage_error() -> None:
    result = bext("cache")
    assert result.returncode == EXIT_USAGE and "usage: bext cache" in result.stderr


def test_no_running_master(tmp_path: Path) -> None:
    path = tmp_path / "bext.config.toml"
    path.write_text(config())
    result = bext("cache", "purge", "--all", config_path=path)
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.startswith(f"bext: no running master for {path}")


def test_a_config_without_the_cache_is_a_clear_error(start_bext: Start, origin: Origin) -> None:
    server = start_bext(cache_config(origin, None, workers=1))
    result = bext("cache", "purge", "--tag", "products", config_path=server.config_path)
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.strip() == (
        "bext: cache purge failed: the cache is not enabled in this configuration"
    )
    assert get(server, "/page").text == "body of /page"


def test_malformed_control_commands_get_an_error_and_the_master_goes_on(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    server = start_bext(cache_config(origin, tmp_path / "store", workers=1))
    cached(server, origin, "/page")
    socket_path = control_path(server.config_path)
    for command, error in [
        ("cache-purge {not json", "error: invalid purge request: invalid JSON"),
        ("cache-purge", "error: invalid purge request: empty body"),
        ('cache-purge {"tags": [1]}', "error: invalid purge request: 'tags' must be a list"),
        ('cache-purge {"tags": ["a"], "all": true}', "error: invalid purge request: 'all'"),
        ('cache-purge {"urls": ["/a\\u0000b"]}', "error: invalid purge request: urls:"),
        ('cache-purge {"drop": "table"}', "error: invalid purge request: unknown field"),
        ("cache-purge " + "[" * 60000, "error: invalid purge request: invalid JSON"),
        ("cache-purge " + "x" * MAX_COMMAND, f"error: command longer than {MAX_COMMAND} bytes"),
        ("cache-purgatory", "error: unknown command 'cache-purgatory'"),
    ]:
        answer = send_command(socket_path, command, timeout=10)
        assert answer.startswith(error), (command[:40], answer)
        assert len(answer) < 1000
    assert server.proc is not None and server.proc.poll() is None
    assert "hit" in get(server, "/page").headers["cache-status"]  # nothing was purged
    assert origin.count["/page"] == 1
    answer = send_command(socket_path, 'cache-purge {"tags": ["products"]}', timeout=10)
    assert answer == 'ok: {"tags": 1, "entries": 0, "all": false}'
    get(server, "/page")
    assert origin.count["/page"] == 2
    assert bext("status", config_path=server.config_path).returncode == 0
