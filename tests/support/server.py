"""A real ``bext run`` master started as a subprocess on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

READY = re.compile(r"ready: \d+ workers serving (\S+)(.*)")
HTTPS_URL = re.compile(r"https://[^\s,]+")


class BextProcess:
    def __init__(self, workdir: Path, config_text: str, name: str = "bext.config.toml") -> None:
        self.workdir = workdir
        self.config_path = workdir / name
        self.config_path.write_text(config_text)
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.port = 0
        self.tls_url = ""
        """The first https:// listener, when the config has [server.tls]."""
        self.tls_port = 0

    def start(self, timeout: float = 15.0) -> BextProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # A config without [cache] path stores under $CACHE_DIRECTORY: this master's
            # own, so that no two tests (nor two runs of the suite) share a store.
            env = {**os.environ, "CACHE_DIRECTORY": str(self.workdir / "cache")}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bext", "run", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = READY.search(self.stderr())
            if match:
                self.base_url = match.group(1).rstrip(",")
                self.port = int(self.base_url.rsplit(":", 1)[1])
                tls = HTTPS_URL.search(match.group(0))
                if tls:
                    self.tls_url = tls.group(0)
                    self.tls_port = int(self.tls_url.rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"bext exited with {self.proc.returncode}:\n{self.stderr()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"bext did not become ready:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return sorted(child.pid for child in psutil.Process(self.pid).children())

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.stderr())
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"log never matched {pattern!r}:\n{self.stderr()}")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop gracefully; kill the whole process group if that does not work."""
        if self.proc is None or self.proc.poll() is not None:
            self._kill_group()
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        self._kill_group()

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def config(routes: str = "", **server: object) -> str:
    """A config listening on an ephemeral loopback port, plus ``routes`` TOML."""
    settings = {"port": 0, "host": "127.0.0.1", "workers": 2, **server}
    lines = ["[server]"]
    for key, value in settings.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n\n" + routes


def bext_cli(server: BextProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``bext ARGS -c <the server's config>``, as an operator runs it next to the master."""
    return subprocess.run(
        [sys.executable, "-m", "bext", *args, "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=server.workdir,
    )
