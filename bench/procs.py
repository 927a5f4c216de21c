"""Processes the benchmark starts (servers and backends), and what it reads about them.

Every process gets its own session, hence its own process group: stopping it (SIGTERM or
the process's own stop signal, SIGKILL to the whole group after ``STOP_TIMEOUT``) reaches
its workers, and its CPU time is the sum over that group.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

STOP_TIMEOUT = 15.0
START_TIMEOUT = 30.0
GRACE = 30.0
"""Seconds a load generator may run beyond its own duration before it is killed."""


class BenchError(Exception):
    """Something is wrong with the setup: reported without a traceback, exit status 1."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failed(self, why: str) -> BenchError:
        return BenchError(f"{self.name} {why}; its stderr ends with:\n{self.stderr_tail()}")


class Processes:
    """Long-lived processes this run started; stop() and stop_one() are idempotent."""

    def __init__(self) -> None:
        self._managed: list[Managed] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        logdir: Path,
        stop_signal: int = signal.SIGTERM,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Managed:
        """Start ``argv`` in its own session; stdout/stderr go to ``logdir/NAME.std*``."""
        stdout = (logdir / f"{name}.stdout").open("wb")
        stderr_path = logdir / f"{name}.stderr"
        stderr = stderr_path.open("wb")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # own process group: killpg reaches its workers
                cwd=cwd or logdir,
                env=None if env is None else dict(env),
            )
        except OSError as exc:
            raise BenchError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        finally:
            stdout.close()
            stderr.close()
        managed = Managed(name, proc, stderr_path, stop_signal)
        self._managed.append(managed)
        return managed

    @property
    def pgids(self) -> list[int]:
        return [m.pid for m in self._managed]

    def stop_one(self, managed: Managed) -> None:
        if managed in self._managed:
            self._managed.remove(managed)
        _stop(managed)

    def stop(self) -> None:
        """Stop everything, newest first."""
        while self._managed:
            _stop(self._managed.pop())


def _stop(managed: Managed) -> None:
    proc = managed.proc
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(managed.stop_signal)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"bench: {managed.name} did not stop in {STOP_TIMEOUT:.0f}s, killing")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    # The leader is gone; anything left in its group (an orphaned worker) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGKILL)


def _proc_stats() -> list[tuple[int, list[str]]]:
    """(pid, fields from field 3 on) of every live process in /proc/*/stat."""
    stats = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        stats.append((int(entry.name), stat[stat.rindex(")") + 2 :].split()))
    return stats


def cpu_seconds_by_group(pgids: Collection[int]) -> dict[int, float]:
    """utime+stime of the live processes of each process group in ``pgids`` (one /proc scan)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(pgids, 0)
    for _pid, fields in _proc_stats():
        # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
        pgrp = int(fields[2])
        if pgrp in totals:
            totals[pgrp] += int(fields[11]) + int(fields[12])
    return {pgid: total / ticks for pgid, total in totals.items()}


def pss_mib_of_group(pgid: int) -> float:
    """Proportional set size of the live processes of process group ``pgid``, in MiB:
    each shared page counted once over the processes sharing it (the master and its
    forked workers), which is what the tree really costs the machine."""
    total_kib = 0
    for pid, fields in _proc_stats():
        if int(fields[2]) != pgid:
            continue
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total_kib += int(line.split()[1])
                break
    return total_kib / 1024


def children_of(pid: int) -> list[int]:
    return sorted(p for p, fields in _proc_stats() if int(fields[1]) == pid)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def fill(text: str, values: Mapping[str, str], what: str) -> str:
    """``text`` with every ``{{name}}`` replaced by ``values[name]``; an unknown name is an
    error (``what`` says where), so a typo fails loudly."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise BenchError(f"{what}: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(replace, text)


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def wait_http(managed: Managed, url: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; fail if ``managed`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if managed.proc.poll() is not None:
            raise managed.failed(f"exited with status {managed.proc.returncode}")
        try:
            with OPENER.open(url, timeout=2) as response:
                response.read()
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise managed.failed(f"did not answer 200 on {url} within {timeout:.0f}s ({last})")


def nginx_temp_paths(temp: Path, nginx_v: str) -> str:
    """``*_temp_path`` lines keeping nginx's temporary files below ``temp`` (not /var/lib)."""
    names = ["client_body", "proxy", "fastcgi"]
    # nginx-light builds may leave modules out; their *_temp_path directives then do not exist.
    names += [m for m in ("uwsgi", "scgi") if f"--without-http_{m}_module" not in nginx_v]
    return "\n".join(f"{name}_temp_path {temp / name};" for name in names)


def check_nginx_config(argv: Sequence[str], conf: Path) -> None:
    """``nginx -t`` on ``conf`` with the prefix/error-log arguments in ``argv``."""
    check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"nginx rejects the generated {conf}:\n{check.stderr.strip()}")


def wait_nginx(managed: Managed, port: int, workers: int) -> None:
    """Wait until nginx accepts on ``port`` and has its ``workers`` worker processes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if managed.proc.poll() is not None:
            raise managed.failed(f"exited with status {managed.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        if len(children_of(managed.pid)) >= workers:
            return
        time.sleep(0.05)
    raise managed.failed(f"did not start within {START_TIMEOUT:.0f}s")


_READY = re.compile(r"ready: (\d+) workers serving (.*)")


def wait_bext_ready(managed: Managed) -> str:
    """What bext's ``ready: N workers serving URL[, URL...]`` line says it serves."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = _READY.search(managed.stderr_path.read_text(errors="replace"))
        if match is not None:
            return match.group(2)
        if managed.proc.poll() is not None:
            raise managed.failed(f"exited with status {managed.proc.returncode}")
        time.sleep(0.05)
    raise managed.failed(f"did not report ready within {START_TIMEOUT:.0f}s")


# -- load generators and CPU ------------------------------------------------------------------


def run_tool(argv: list[str], seconds: float) -> str:
    """stdout of ``argv``; killed if it runs GRACE seconds past ``seconds``."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + GRACE, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{shlex.join(argv)} overran {seconds:.0f}s by {GRACE:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def machine_cpu() -> tuple[int, int, int, int]:
    """Jiffies over all CPUs since boot from /proc/stat: (total, idle incl. iowait, steal,
    user+nice+system, the part that per-process accounting sees)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return sum(values[:8]), values[3] + values[4], values[7], sum(values[:3])


def children_cpu() -> float:
    """CPU seconds of the waited-for children (the load generators) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the command line -------------------------------------------------------------------------


def find_tool(given: str | None, *candidates: str) -> str:
    """``given`` (a path or a name on PATH), else the first executable of ``candidates``."""
    for candidate in [given] if given else list(candidates):
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and os.access(found, os.X_OK):
            return found
    raise BenchError(f"cannot find {given or candidates[-1]} (see bench/README.md)")


def version_of(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "unknown"


def command_line(argv: list[str]) -> str:
    """``argv`` as the command to type again from the current folder."""

    def rel(path: str) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(path).resolve().relative_to(Path.cwd()))
        return path

    python = sys.executable
    with contextlib.suppress(ValueError):
        python = str(Path(python).relative_to(Path.cwd()))  # keep .venv/bin/python, no symlinks
    return shlex.join([python, rel(argv[0]), *argv[1:]])


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def bench_main(
    script: str,
    argv: list[str] | None,
    parse_args: Callable[[list[str]], argparse.Namespace],
    run: Callable[[argparse.Namespace, list[str]], int],
) -> int:
    """Parse, run, and turn a `BenchError` or Ctrl-C into a message and an exit status.

    SIGTERM and SIGHUP raise SystemExit, so try/finally and atexit stop every process.
    """
    full_argv = sys.argv if argv is None else [script, *argv]
    args = parse_args(full_argv[1:])
    signal.signal(signal.SIGTERM, _raise_on_signal)
    signal.signal(signal.SIGHUP, _raise_on_signal)
    try:
        return run(args, full_argv)
    except BenchError as exc:
        log(f"bench: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
