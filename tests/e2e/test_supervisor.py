"""Reload, control commands and systemd notifications on a real master."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import BextProcess, bext_cli, config

Start = Callable[..., BextProcess]


def routes(version: int) -> str:
    return f"""
[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "v{version}" }}
"""


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


def get(port: int, path: str = "/") -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return Answer(response.status, response.read())
    finally:
        conn.close()


def rewrite(server: BextProcess, text: str) -> None:
    tmp = server.config_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(server.config_path)


class Load:
    """64 clients hammering the server: keep-alive and fresh connections, GET and POST."""

    def __init__(self, port: int, clients: int = 64) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.posts_sent = 0
        self.posts_answered = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        keep_alive = index % 2 == 0
        conn: http.client.HTTPConnection | None = None
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            post = sequence % 3 == 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                if post:
                    body = f"client {index} post {sequence}".encode()
                    with self.lock:
                        self.posts_sent += 1
                    conn.request("POST", "/submit", body=body)
                else:
                    conn.request("GET", f"/page/{sequence}")
                response = conn.getresponse()
                data = response.read()
                if response.status != 200 or not data.startswith(b"v"):
                    raise AssertionError(f"{response.status} {data[:50]!r}")
                with self.lock:
                    self.ok += 1
                    if post:
                        self.posts_answered += 1
                if not keep_alive or response.getheader("connection") == "close":
                    conn.close()
                    conn = None
            except Exception as exc:
                with self.lock:
                    self.failures.append(f"client {index}: {type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_20_reloads_under_load_lose_nothing(start_bext: Start) -> None:
    server = start_bext(config(routes(0), workers=2))
    with Load(server.port) as load:
        time.sleep(0.5)
        for version in range(1, 21):
            rewrite(server, config(routes(version), workers=2))
            server.signal(signal.SIGHUP)
            server.wait_for_log(rf"generation {version + 1} serving", timeout=30)
            time.sleep(0.2)
        time.sleep(0.5)
    assert load.failures == [], load.failures[:10]
    assert load.ok > 500
    assert load.posts_answered == load.posts_sent > 0
    assert get(server.port).body == b"v20"
    assert len(server.worker_pids()) == 2  # the old generations are gone


def test_bext_reload_command_and_a_refused_config(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=1))
    rewrite(server, config(routes(2), workers=1))
    result = bext_cli(server, "reload")
    assert result.returncode == 0, result.stderr
    assert "generation 2 serving" in result.stdout
    rewrite(server, config(routes(3).replace("respond", "respnd"), workers=1))
    result = bext_cli(server, "reload")
    assert result.returncode == 78
    assert 'route_rules[0].respnd: unknown key (did you mean "respond"?)' in result.stderr
    server.wait_for_log("reload refused, the running configuration stays")
    assert get(server.port).body == b"v2"  # the old configuration keeps serving


def test_reload_can_change_the_listening_port(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=1))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    rewrite(server, config(routes(2), workers=1, port=new_port))
    assert bext_cli(server, "reload").returncode == 0
    assert get(new_port).body == b"v2"


def test_status_and_stop(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=2))
    for _ in range(5):
        get(server.port)
    deadline = time.monotonic() + 5
    while True:
        status = json.loads(bext_cli(server, "status", "--json").stdout)
        if status["counters"]["requests"] >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status["master"]["pid"] == server.pid
    assert sorted(w["pid"] for w in status["workers"]) == server.worker_pids()
    assert status["counters"]["status_2xx"] >= 5
    assert status["generation"] == 1
    human = bext_cli(server, "status").stdout
    assert f"master {server.pid}, generation 1" in human
    result = bext_cli(server, "stop")
    assert result.returncode == 0
    assert server.wait(30) == 0


def test_control_commands_without_a_master(tmp_path: Path) -> None:
    path = tmp_path / "bext.config.toml"
    path.write_text(config(routes(1)))
    result = subprocess.run(
        [sys.executable, "-m", "bext", "reload", "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1 and "no running master" in result.stderr


def test_sigttin_and_sigttou_change_the_worker_count(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=1))
    server.signal(signal.SIGTTIN)
    server.wait_for_log("worker count 1 -> 2")
    deadline = time.monotonic() + 10
    while len(server.worker_pids()) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.worker_pids()) == 2
    server.signal(signal.SIGTTOU)
    server.wait_for_log("worker count 2 -> 1")
    deadline = time.monotonic() + 10
    while len(server.worker_pids()) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.worker_pids()) == 1
    assert get(server.port).status == 200


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield sock, path
    sock.close()


def receive_until(sock: socket.socket, needle: str) -> list[str]:
    messages = []
    while True:
        message = sock.recv(4096).decode()
        messages.append(message)
        if needle in message:
            return messages


def test_systemd_notify_sequence(
    start_bext: Start, notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    server = start_bext(config(routes(1), workers=2))
    started = receive_until(sock, "READY=1")
    assert "STATUS=generation 1, 2 workers" in started[-1]
    rewrite(server, config(routes(2), workers=2))
    server.signal(signal.SIGHUP)
    reload = receive_until(sock, "READY=1")
    assert reload[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert "STATUS=generation 2" in reload[-1]
    rewrite(server, "[server]\nprot = 1\n")
    server.signal(signal.SIGHUP)
    refused = receive_until(sock, "READY=1")  # RELOADING, then READY again with the old one
    assert refused[0].startswith("RELOADING=1") and "generation 2" in refused[-1]
    rewrite(server, config(routes(2), workers=2))
    server.signal(signal.SIGUSR2)  # binary upgrade: the new master announces itself
    upgraded = receive_until(sock, "MAINPID=")
    new_master = int(upgraded[-1].split("MAINPID=")[1].split("\n")[0])
    assert new_master != server.pid and "READY=1" in upgraded[-1]
    # The old master retires without STOPPING=1: systemd would stop the whole unit.
    retiring = receive_until(sock, "retiring")
    assert not any("STOPPING=1" in message for message in retiring)
    assert f"master {new_master} took over" in retiring[-1]
    assert server.wait(30) == 0
    os.kill(new_master, signal.SIGTERM)
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")[-1]


def test_binary_upgrade_under_load_loses_nothing(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=2))
    old_master = server.pid
    with Load(server.port) as load:
        time.sleep(0.5)
        result = bext_cli(server, "upgrade")
        assert result.returncode == 0, result.stderr
        new_master = int(result.stdout.rsplit(" ", 1)[1])
        server.wait_for_log(rf"master {old_master} exiting", timeout=40)
        time.sleep(0.5)
    assert load.failures == [], load.failures[:10]
    assert load.posts_answered == load.posts_sent > 0
    assert server.wait(10) == 0  # the old master retired cleanly
    status = json.loads(bext_cli(server, "status", "--json").stdout)
    assert status["master"]["pid"] == new_master != old_master
    assert status["generation"] == 2
    assert get(server.port).body == b"v1"
    # counters survive the upgrade: the shared segment was handed over
    assert status["counters"]["requests"] >= load.ok
    assert bext_cli(server, "stop").returncode == 0


def test_kill_9_of_a_worker_under_load(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=2))
    with Load(server.port, clients=16) as load:
        time.sleep(0.5)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log(rf"worker \d \(pid {victim}\) killed by signal 9; respawning")
        time.sleep(1.0)
        failed_at_kill = len(load.failures)
        ok_at_kill = load.ok
        time.sleep(1.5)
    # Only requests in flight on the killed worker can fail (its clients' connections);
    # connections queued on its socket wait for the replacement, which the master
    # starts on the very same socket.
    assert failed_at_kill <= 16, load.failures
    assert len(load.failures) == failed_at_kill  # nothing fails once it is replaced
    assert load.ok > ok_at_kill + 100
    assert len(server.worker_pids()) == 2 and victim not in server.worker_pids()


def test_stuck_worker_is_killed_and_replaced(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=1, heartbeat_timeout="2s"))
    stuck = server.worker_pids()[0]
    os.kill(stuck, signal.SIGSTOP)  # its event loop stops: no more heartbeats
    server.wait_for_log(rf"worker 0 \(pid {stuck}\) is stuck \(no heartbeat", timeout=15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if pids and stuck not in pids:
            break
        time.sleep(0.1)
    assert stuck not in server.worker_pids()
    assert get(server.port).status == 200


def test_sigusr1_reopens_the_access_log(start_bext: Start, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    server = start_bext(config(routes(1), workers=1) + f'\n[log]\naccess = "{log_path}"\n')
    get(server.port, "/before")
    deadline = time.monotonic() + 5
    while "/before" not in (log_path.read_text() if log_path.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    log_path.rename(tmp_path / "access.log.1")  # what logrotate does
    server.signal(signal.SIGUSR1)
    server.wait_for_log("SIGUSR1: workers reopen their log files")
    time.sleep(0.3)
    get(server.port, "/after")
    deadline = time.monotonic() + 5
    while "/after" not in (log_path.read_text() if log_path.exists() else ""):
        assert time.monotonic() < deadline, "the new log file never got the line"
        time.sleep(0.1)
    assert "/after" not in (tmp_path / "access.log.1").read_text()
