"""A master that owns each generation: a reload is built whole before it replaces anything,
and dropping it (a time-out, a build error) leaves the running generation exactly as it was.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from bext.cli import control_path
from bext.master.control import send_command
from tests.e2e.test_supervisor import bext_cli, get, rewrite, routes
from tests.support.server import BextProcess, config
from tests.support.worker_hook import worker_hook

Start = Callable[..., BextProcess]


@pytest.fixture
def hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that, while it exists, keeps new generations' workers from starting.

    Masters started in this test load :mod:`tests.support.worker_hook`, and
    ``BEXT_READY_TIMEOUT`` makes a reload give up after 1.5 s instead of 30 s.
    """
    hold_file, _ = worker_hook(tmp_path, monkeypatch)
    monkeypatch.setenv("BEXT_READY_TIMEOUT", "1.5")
    return hold_file


def status(server: BextProcess) -> dict[str, object]:
    result = bext_cli(server, "status", "--json")
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def workers(server: BextProcess) -> list[dict[str, object]]:
    listed = status(server)["workers"]
    assert isinstance(listed, list)
    return listed


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_reload_that_times_out_leaves_the_old_generation_whole(
    start_bext: Start, hold: Path
) -> None:
    """The new generation's workers are held (never ready) until the reload times out.

    Holding them in a wrapper of ``worker_main`` (see ``hold``) is deterministic, where
    SIGSTOPping them from the test would race with their start (a few milliseconds).
    Before generations were owned whole, the master kept the rejected config, TLS,
    listeners and worker count after the time-out: a killed worker (and the extra slot
    the new config asks for) came back serving "v2".
    """
    server = start_bext(config(routes(1), workers=2))
    hold.touch()
    rewrite(server, config(routes(2), workers=3))  # a new body and one more slot
    result = bext_cli(server, "reload")
    assert result.returncode == 1, result.stdout
    assert "the new workers did not start" in result.stderr
    server.wait_for_log("generation 2 did not start")

    assert status(server)["generation"] == 1
    wait_until(lambda: len(workers(server)) == 2)  # the held ones are gone
    assert {(w["slot"], w["generation"], w["state"]) for w in workers(server)} == {
        (0, 1, "ready"),
        (1, 1, "ready"),
    }
    assert get(server.port).body == b"v1"

    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    server.wait_for_log(rf"worker \d \(pid {victim}\) killed by signal 9; respawning")
    wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids())
    wait_until(lambda: all(w["state"] == "ready" for w in workers(server)))
    titles = {psutil.Process(pid).cmdline()[0] for pid in server.worker_pids()}
    assert titles == {"bext: worker 0 (gen 1)", "bext: worker 1 (gen 1)"}
    for _ in range(20):  # fresh connections land on both slots, the respawned one included
        assert get(server.port).body == b"v1"
    assert status(server)["generation"] == 1

    # Once its workers may start, the same configuration goes live as generation 2.
    hold.unlink()
    result = bext_cli(server, "reload")
    assert result.returncode == 0, result.stderr
    assert "generation 2 serving" in result.stdout
    assert get(server.port).body == b"v2"
    wait_until(lambda: len(server.worker_pids()) == 3)


def unbuildable(version: int, access: str) -> str:
    """A config that parses but cannot be built: its access log cannot be opened."""
    return config(routes(version), workers=1) + f'\n[log]\naccess = "{access}"\n'


def test_a_config_that_cannot_be_built_is_refused_at_once(
    start_bext: Start, tmp_path: Path
) -> None:
    server = start_bext(config(routes(1), workers=1))
    missing = tmp_path / "no-such-dir" / "access.log"
    rewrite(server, unbuildable(2, str(missing)))

    started = time.monotonic()
    answer = send_command(control_path(server.config_path), "reload", timeout=10)
    assert time.monotonic() - started < 1.0, answer
    assert answer.startswith("error: invalid configuration"), answer
    assert f"log.access: cannot open {missing}: No such file or directory" in answer

    result = bext_cli(server, "reload")
    assert result.returncode == 78
    assert "log.access" in result.stderr and "Traceback" not in server.stderr()
    server.wait_for_log("reload refused, the running configuration stays")
    assert get(server.port).body == b"v1"  # the old configuration keeps serving
    assert status(server)["generation"] == 1
    assert [w["generation"] for w in workers(server)] == [1]

    check = bext_cli(server, "check")
    assert check.returncode == 78
    assert check.stderr.startswith("bext: invalid configuration")
    assert "log.access" in check.stderr and str(missing.parent) in check.stderr
    assert not missing.parent.exists()  # check never creates anything

    # Even an exception nobody expected (a NUL byte in a path) is a refused reload.
    rewrite(server, unbuildable(3, "/tmp/bad\\u0000name.log"))
    result = bext_cli(server, "reload")
    assert result.returncode == 78 and "log.access" in result.stderr, result.stderr
    assert get(server.port).body == b"v1"
    assert status(server)["generation"] == 1

    rewrite(server, config(routes(4), workers=1))  # and the master still reloads fine
    assert bext_cli(server, "reload").returncode == 0
    assert get(server.port).body == b"v4"


@pytest.mark.parametrize("access", ["{tmp}/no-such-dir/access.log", "/tmp/bad\\u0000name.log"])
def test_run_refuses_a_config_that_cannot_be_built(
    start_bext: Start, tmp_path: Path, access: str
) -> None:
    with pytest.raises(RuntimeError, match="bext exited with 78"):
        start_bext(unbuildable(1, access.format(tmp=tmp_path)))
    stderr = (tmp_path / "bext0" / "stderr.log").read_text()
    assert "cannot start: invalid configuration" in stderr
    assert "log.access" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "no-such-dir").exists()
