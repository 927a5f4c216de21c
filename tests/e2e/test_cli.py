"""The bext command line: check, --version, --help, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bext import __version__

SEED = Path(__file__).parent.parent / "config" / "seed_000.toml"


def bext(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bext", *args], capture_output=True, text=True, cwd=cwd, timeout=30
    )


def test_version() -> None:
    result = bext("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"bext {__version__}"


@pytest.mark.parametrize("verb", [[], ["run"], ["serve"], ["check"]])
def test_help_on_every_verb(verb: list[str]) -> None:
    result = bext(*verb, "--help")
    assert result.returncode == 0 and "usage: bext" in result.stdout


def test_no_verb_is_a_usage_error() -> None:
    result = bext()
    assert result.returncode == 2 and "usage: bext" in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    assert bext("check", "--frobnicate").returncode == 2


def test_check_seed_config_prints_routing_table(tmp_path: Path) -> None:
    (tmp_path / "bext.config.toml").write_text(SEED.read_text())
    result = bext("check", cwd=tmp_path)  # default path ./bext.config.toml
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "listeners: http://0.0.0.0:3000, http://[::]:3000" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert "/static/**" in lines[0] and "static" in lines[0]
    assert "/media/**" in lines[1]
    assert "/**" in lines[2] and "proxy django (http://127.0.0.1:8000)" in lines[2]


def test_check_bad_config_exits_78_with_key_path(tmp_path: Path) -> None:
    bad = SEED.read_text().replace('proxy = "django"', 'proxy = "djnago"')
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    result = bext("check", "-c", str(path))
    assert result.returncode == 78
    assert 'route_rules[2].proxy: no upstream named "djnago" (did you mean "django"?)' in (
        result.stderr
    )


def test_missing_config_file(tmp_path: Path) -> None:
    result = bext("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 78 and "nope.toml" in result.stderr


def test_run_with_bad_config_exits_78_and_binds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nprot = 3000\n")
    result = bext("run", "-c", str(path))
    assert result.returncode == 78
    assert 'server.prot: unknown key (did you mean "port"?)' in result.stderr


def test_run_port_in_use_exits_1(tmp_path: Path) -> None:
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    path = tmp_path / "c.toml"
    path.write_text(f'[server]\nport = {port}\nhost = "127.0.0.1"\nworkers = 1\n')
    try:
        result = bext("run", "-c", str(path))
    finally:
        blocker.close()
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
