"""Active health checks with two real Gunicorn servers behind a real master."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.django_app import AppServer, DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]


def health_config(ports: list[int]) -> str:
    servers = "".join(f'[[upstreams.app.servers]]\nurl = "http://127.0.0.1:{p}"\n' for p in ports)
    return config(
        f"""
[upstreams.app]
connect_timeout_ms = 1000
{servers}
[upstreams.app.health]
enabled = true
path = "/health"
interval = "250ms"
timeout = "200ms"
rise = 1
fall = 2

[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        workers=2,
    )


def upstream_states(server: BextProcess) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "bext", "status", "--json", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return {u["server"]: u["state"] for u in json.loads(result.stdout)["upstreams"]}


def wait_state(server: BextProcess, url: str, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while upstream_states(server).get(url) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never became {state}: {upstream_states(server)}")
        time.sleep(0.1)


def test_failover_and_recovery_with_two_gunicorns(
    start_bext: Start, demo_site: DemoSite, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    apps: list[AppServer] = []
    try:
        apps.extend(start_gunicorn(demo_site, port) for port in ports)
        server = start_bext(health_config(ports))
        second = f"http://127.0.0.1:{ports[1]}"
        wait_state(server, second, "up")
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        r = client.get("/health")
                        if r.status_code != 200:
                            failures.append(str(r.status_code))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            apps[1].stop()  # one server dies
            wait_state(server, second, "down")
            marker = len(server.stderr())
            time.sleep(1.0)
            # All workers agree it is down: none of them tries to connect to it any more.
            assert f"connect to {second} failed" not in server.stderr()[marker:]
            apps[1] = start_gunicorn(demo_site, ports[1])
            wait_state(server, second, "up")  # traffic comes back as soon as a probe passes
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(20)
        assert failures == []
    finally:
        for app in apps:
            app.stop()


def test_all_servers_down_gives_a_fast_502_then_recovers(
    start_bext: Start, demo_site: DemoSite
) -> None:
    """Every server down: requests still go to them (fail open), and a server that refuses
    connections answers with a fast 502."""
    port = free_port()
    app = start_gunicorn(demo_site, port)
    try:
        server = start_bext(health_config([port]))
        url = f"http://127.0.0.1:{port}"
        wait_state(server, url, "up")
        app.stop()
        wait_state(server, url, "down")
        started = time.monotonic()
        r = httpx.get(server.base_url + "/x", headers={"Accept": "text/html"})
        assert r.status_code == 502 and "upstream server is unavailable" in r.text
        assert time.monotonic() - started < 0.5
        server.wait_for_log("every server failed its health checks.*failing open")
        app = start_gunicorn(demo_site, port)
        wait_state(server, url, "up")
        assert httpx.get(server.base_url + "/health").status_code == 200
    finally:
        app.stop()
