"""`max_conns` and the edge queue, with the demo under a real Gunicorn behind a real master.

Concurrency is measured where it matters, at Gunicorn's side: the TCP connections to its
port, accepted or still waiting in its listen backlog (:mod:`tests.support.tcp_diag`).
Gunicorn's sync workers close the connection after each response, so that is one
connection per request in flight. Without a limit bext opens one per concurrent request
and the backlog holds the excess; with ``max_conns`` the excess waits in bext's queue.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.django_app import AppServer, DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, config
from tests.support.tcp_diag import ConnectionSampler, established_to

Start = Callable[..., BextProcess]


def queue_config(port: int, max_conns: int, workers: int, **upstream: object) -> str:
    settings = "".join(
        f'{key} = "{value}"\n' if isinstance(value, str) else f"{key} = {value}\n"
        for key, value in upstream.items()
    )
    return config(
        f"""
[upstreams.app]
{settings}
[[upstreams.app.servers]]
url = "http://127.0.0.1:{port}"
max_conns = {max_conns}

[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        workers=workers,
    )


def connections_to(port: int) -> int:
    return len(established_to(port))


def wait_connections(port: int, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while connections_to(port) != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{connections_to(port)} connections to {port}, not {count}")
        time.sleep(0.01)


@pytest.fixture
def gunicorn(demo_site: DemoSite) -> Iterator[tuple[AppServer, int]]:
    """The demo under Gunicorn with 2 sync workers (one request at a time each)."""
    port = free_port()
    app = start_gunicorn(demo_site, port, workers=2)
    try:
        yield app, port
    finally:
        app.stop()


class Background:
    """Requests running in threads, each result (status or exception) kept in order."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: dict[int, int | str] = {}

    def get(self, url: str, timeout: float = 60) -> int:
        number = len(self.threads)

        def run() -> None:
            try:
                response = httpx.get(url, timeout=timeout)
                ok = response.status_code == 200 and response.text == "done"
                self.results[number] = response.status_code if ok else repr(response)
            except httpx.HTTPError as exc:
                self.results[number] = repr(exc)

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)
        return number

    def join(self, timeout: float = 90) -> dict[int, int | str]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        return self.results


def test_two_workers_send_at_most_max_conns_and_the_queue_serves_fifty_clients(
    start_bext: Start, gunicorn: tuple[AppServer, int]
) -> None:
    _, port = gunicorn
    server = start_bext(queue_config(port, max_conns=2, workers=2))
    clients = Background()
    started = time.monotonic()
    with ConnectionSampler(port) as sampler:
        for _ in range(50):
            clients.get(server.base_url + "/slow?seconds=0.2")
        results = clients.join()
    elapsed = time.monotonic() - started
    assert sorted(results) == list(range(50))
    assert [r for r in results.values() if r != 200] == []  # every client served, no error
    # The two bext workers together never had more than 2 requests at Gunicorn, and did
    # use both places (the sampler works): 50 x 0.2 s at 2 at a time is about 5 s.
    assert sampler.peak == 2, sampler.peak
    assert elapsed >= 4.5
    # The waits are in the metrics: most of the fifty queued, for seconds in all.
    metrics = httpx.get(server.base_url + "/__bext/metrics").text
    waits = re.search(r'^bext_upstream_queue_waits_total\{upstream="app"\} (\d+)$', metrics, re.M)
    waited = re.search(
        r'^bext_upstream_queue_wait_seconds_total\{upstream="app"\} ([0-9.e+-]+)$', metrics, re.M
    )
    assert waits is not None and 40 <= int(waits.group(1)) <= 50
    assert waited is not None and float(waited.group(1)) > 10


def test_a_full_queue_is_refused_at_once_with_503_and_retry_after(
    start_bext: Start, gunicorn: tuple[AppServer, int]
) -> None:
    _, port = gunicorn
    server = start_bext(queue_config(port, max_conns=1, workers=1, queue=1))
    running = Background()
    running.get(server.base_url + "/slow?seconds=3")
    wait_connections(port, 1)  # in flight: the one place is taken
    running.get(server.base_url + "/slow?seconds=0.1")
    time.sleep(0.3)  # waiting in the queue, which is now full
    assert connections_to(port) == 1
    started = time.monotonic()
    refused = httpx.get(server.base_url + "/slow?seconds=0.1", timeout=10)
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "busy" in refused.text
    assert running.join() == {0: 200, 1: 200}  # the queued request was served after the first
    server.wait_for_log(r"upstream app: every server is at max_conns and the queue is full")


def test_a_request_that_waits_longer_than_queue_timeout_gets_503(
    start_bext: Start, gunicorn: tuple[AppServer, int]
) -> None:
    _, port = gunicorn
    server = start_bext(queue_config(port, max_conns=1, workers=1, queue_timeout="500ms"))
    running = Background()
    running.get(server.base_url + "/slow?seconds=3")
    wait_connections(port, 1)
    started = time.monotonic()
    refused = httpx.get(server.base_url + "/slow?seconds=0.1", timeout=10)
    waited = time.monotonic() - started
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert 0.45 <= waited < 2.5, waited
    assert running.join() == {0: 200}


def test_a_worker_killed_with_a_request_in_flight_does_not_keep_its_place(
    start_bext: Start, gunicorn: tuple[AppServer, int]
) -> None:
    """The dead worker's count names a pid that is gone: the next request that finds the
    server full drops it, instead of waiting for a place that never frees."""
    _, port = gunicorn
    server = start_bext(queue_config(port, max_conns=1, workers=1, queue_timeout="5s"))
    doomed = Background()
    doomed.get(server.base_url + "/slow?seconds=8")
    wait_connections(port, 1)
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)
    server.wait_for_log(rf"worker 0 \(pid {worker}\) .*respawning")
    deadline = time.monotonic() + 15
    while server.worker_pids() in ([], [worker]):
        assert time.monotonic() < deadline, "the worker was not replaced"
        time.sleep(0.05)
    started = time.monotonic()
    response = httpx.get(server.base_url + "/slow?seconds=0.1", timeout=15)
    assert response.status_code == 200 and response.text == "done"
    assert time.monotonic() - started < 3.0
    assert doomed.join(30)[0] != 200  # its client lost the connection with the worker


def test_a_slow_client_does_not_hold_the_place_once_the_app_has_answered(
    start_bext: Start, gunicorn: tuple[AppServer, int]
) -> None:
    """A request counts until the server has sent its response, not until the client has
    read it: bext reads ahead, and the next request goes out meanwhile."""
    _, port = gunicorn
    server = start_bext(queue_config(port, max_conns=1, workers=1, queue_timeout="3s"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.sendall(b"GET /download?size=8388608 HTTP/1.1\r\nHost: x\r\n\r\n")  # 8 MiB
        deadline = time.monotonic() + 10
        while not established_to(port):  # it reaches Gunicorn...
            assert time.monotonic() < deadline
            time.sleep(0.01)
        wait_connections(port, 0)  # ...which sends it all, to bext's read-ahead
        started = time.monotonic()
        response = httpx.get(server.base_url + "/slow?seconds=0.1", timeout=10)
        assert response.status_code == 200 and response.text == "done"
        assert time.monotonic() - started < 2.0
        assert len(reader.recv(65536)) > 0  # and the slow client still gets its download


def test_a_keep_alive_upstream_frees_the_place_when_each_response_completes(
    start_bext: Start, demo_site: DemoSite
) -> None:
    """Uvicorn keeps connections open: a request's place ends with its response, and the
    pooled connection carries the next one."""
    port = free_port()
    app = AppServer("uvicorn", demo_site, f"127.0.0.1:{port}")
    try:
        app.wait_ready(f"http://127.0.0.1:{port}/health")
        server = start_bext(queue_config(port, max_conns=2, workers=1))
        clients = Background()
        started = time.monotonic()
        for _ in range(20):
            clients.get(server.base_url + "/slow?seconds=0.1")
        assert clients.join() == dict.fromkeys(range(20), 200)
        assert time.monotonic() - started >= 0.95  # 20 x 0.1 s, 2 at a time
        assert len(established_to(port)) <= 2  # the pool: at most one per place used
    finally:
        app.stop()
