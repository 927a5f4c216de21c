"""The real ``bext run`` master: workers, respawn, signals, graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.rawhttp import RawConnection, wait_port_closed
from tests.support.server import BextProcess, config
from tests.support.worker_hook import worker_hook

HELLO = """
[[route_rules]]
pattern = "/hello"
respond = { status = 200, body = "hello\\n" }
headers = { "x-served-by" = "bext" }

[[route_rules]]
pattern = "/old/**"
redirect = { to = "https://example.test{path}?{query}", status = 308 }
"""

Start = Callable[..., BextProcess]


def test_serves_routes_with_workers_as_children(start_bext: Start) -> None:
    server = start_bext(config(HELLO, workers=2))
    assert len(server.worker_pids()) == 2
    with httpx.Client(base_url=server.base_url) as client:
        r = client.get("/hello")
        assert r.status_code == 200 and r.text == "hello\n"
        assert r.headers["x-served-by"] == "bext"
        r = client.get("/old/a/b", params={"q": "1"})
        assert r.status_code == 308
        assert r.headers["location"] == "https://example.test/old/a/b?q=1"
        assert client.get("/missing").status_code == 404
    titles = {psutil.Process(pid).cmdline()[0] for pid in server.worker_pids()}
    assert titles == {"bext: worker 0 (gen 1)", "bext: worker 1 (gen 1)"}


def test_listens_on_ipv4_and_ipv6(start_bext: Start) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 on this host")
    server = start_bext(config(HELLO, host=["127.0.0.1", "::1"]).replace("'", '"'))
    for host in ("127.0.0.1", "[::1]"):
        r = httpx.get(f"http://{host}:{server.port}/hello")
        assert r.status_code == 200


def test_killed_worker_is_respawned_and_service_continues(start_bext: Start) -> None:
    server = start_bext(config(HELLO, workers=2))
    before = server.worker_pids()
    os.kill(before[0], signal.SIGKILL)
    server.wait_for_log(rf"worker \d \(pid {before[0]}\) killed by signal 9; respawning")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = server.worker_pids()
        if len(after) == 2 and before[0] not in after:
            break
        time.sleep(0.05)
    assert len(after) == 2 and before[1] in after and before[0] not in after
    for _ in range(20):  # fresh connections land on both slots' sockets
        assert httpx.get(server.base_url + "/hello").status_code == 200


def test_crash_loop_backs_off_then_recovers(
    start_bext: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, crash = worker_hook(tmp_path, monkeypatch)
    server = start_bext(config(HELLO, workers=1))
    crash.touch()  # from now on a worker exits with code 1 as it starts
    os.kill(server.worker_pids()[0], signal.SIGKILL)
    server.wait_for_log(r"respawning in 0\.25s")
    server.wait_for_log(r"respawning in 0\.50s")
    server.wait_for_log(r"respawning in 1\.00s")
    crashes = server.stderr().count("exited with code 1")
    time.sleep(1.0)
    assert server.stderr().count("exited with code 1") <= crashes + 1  # not spinning
    crash.unlink()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.base_url + "/hello", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise AssertionError("worker never came back:\n" + server.stderr())


def test_sigterm_lets_in_flight_response_complete(start_bext: Start) -> None:
    big = "b" * (8 * 1024 * 1024)
    routes = f'[[route_rules]]\npattern = "/big"\nrespond = {{ body = "{big}" }}\n'
    server = start_bext(config(routes, workers=1, graceful_timeout=20))
    with RawConnection(server.port, timeout=20) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        conn.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        first = conn.sock.recv(1024)
        assert first.startswith(b"HTTP/1.1 200")
        conn.buffer = first
        server.signal(signal.SIGTERM)
        server.wait_for_log("graceful stop")
        time.sleep(0.5)
        response = conn.read_response()  # the rest arrives although the worker is stopping
        assert len(response.body) == len(big)
        assert response.header("connection") is None  # decided before the stop began
        assert conn.is_closed(5)  # closed after the response, not reused
    assert server.wait(30) == 0
    wait_port_closed(server.port)


def test_sigterm_closes_idle_keepalive_connections(start_bext: Start) -> None:
    server = start_bext(config(HELLO, workers=1))
    with RawConnection(server.port) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 200
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert conn.is_closed(5)
        assert server.wait(10) == 0
        assert time.monotonic() - started < 5


def test_sigint_stops_fast(start_bext: Start) -> None:
    big = "b" * (4 * 1024 * 1024)
    routes = f'[[route_rules]]\npattern = "/big"\nrespond = {{ body = "{big}" }}\n'
    server = start_bext(config(routes, workers=2, graceful_timeout=60))
    conn = RawConnection(server.port)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    conn.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    conn.sock.recv(100)
    started = time.monotonic()
    server.signal(signal.SIGINT)
    assert server.wait(10) == 0
    assert time.monotonic() - started < 6
    conn.close()
