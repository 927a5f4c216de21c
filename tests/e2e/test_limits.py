"""Limits per client and per worker on a real master: `[limits.NAME]` rates and
`max_connections_per_ip` shared by all workers, `max_connections` pausing accept (plain and
TLS) instead of resetting, and what a crashed worker held being released."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import trustme

from tests.support.h3client import h3_connect, run
from tests.support.rawhttp import RawConnection, RawResponse, exchange
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

ROUTES = """
[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "ok" }
"""

LIMITED = """
[limits.login]
rate = "1/m"
burst = 4

[[route_rules]]
pattern = "/login/**"
limit = "login"
respond = { status = 200, body = "ok" }

[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "free" }
"""


def status(server: BextProcess) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "bext", "status", "--json", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30, cwd=server.workdir, check=True,
    )  # fmt: skip
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def counter(server: BextProcess, name: str, expected: int, timeout: float = 5.0) -> int:
    """The counter once it reaches ``expected`` (workers write it after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        counters = status(server)["counters"]
        assert isinstance(counters, dict)
        value = int(counters[name])
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def attempt(port: int, request: bytes = GET) -> tuple[RawConnection, RawResponse | None]:
    """A fresh connection and its response, or None when the server closed it unanswered."""
    conn = RawConnection(port, timeout=5)
    try:
        conn.send(request)
        return conn, conn.read_response()
    except ConnectionError:
        conn.close()
        return conn, None


def waits(conn: RawConnection, seconds: float) -> bool:
    """True if nothing at all (no response, no close, no reset) arrives for ``seconds``."""
    conn.sock.settimeout(seconds)
    try:
        data = conn.sock.recv(1)
    except TimeoutError:
        return True
    finally:
        conn.sock.settimeout(10)
    conn.buffer += data
    return False


def holders(server: BextProcess) -> set[int]:
    """The workers holding an established client connection now."""
    found = set()
    for pid in server.worker_pids():
        for conn in psutil.Process(pid).net_connections("tcp"):
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == server.port:
                found.add(pid)
    return found


def test_a_rate_limit_is_one_decision_across_workers(start_bext: Start) -> None:
    """rate 1/m, burst 4: of 20 requests on fresh connections spread over both workers
    (SO_REUSEPORT hashes each connection to one), exactly 5 pass."""
    server = start_bext(config(LIMITED, workers=2))
    held: list[RawConnection] = []
    answers: list[RawResponse] = []
    try:
        for _ in range(20):
            conn, response = attempt(server.port, b"GET /login/ HTTP/1.1\r\nHost: a\r\n\r\n")
            held.append(conn)
            assert response is not None
            answers.append(response)
        assert holders(server) == set(server.worker_pids())  # both workers took part
    finally:
        for conn in held:
            conn.close()
    assert [r.status for r in answers] == [200] * 5 + [429] * 15
    for refused in answers[5:]:
        assert 1 <= int(refused.header("retry-after") or "0") <= 60
        assert refused.body.startswith(b"429 Too Many Requests")
    assert exchange(server.port, GET).status == 200  # other rules are not limited
    assert counter(server, "rate_limited", 15) == 15
    human = subprocess.run(
        [sys.executable, "-m", "bext", "status", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30, cwd=server.workdir, check=True,
    ).stdout  # fmt: skip
    assert "rate limited (429) 15" in human
    # the buckets live in the master's segment: a new generation keeps them
    subprocess.run(
        [sys.executable, "-m", "bext", "reload", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=60, cwd=server.workdir, check=True,
    )  # fmt: skip
    server.wait_for_log(r"generation 2 serving")
    assert exchange(server.port, b"GET /login/ HTTP/1.1\r\nHost: a\r\n\r\n").status == 429


def test_a_rate_limit_by_header_falls_back_to_the_address(start_bext: Start) -> None:
    limits = LIMITED.replace("burst = 4", 'burst = 1\nkey = "header:X-Api-Key"')
    server = start_bext(config(limits, workers=2))

    def get(key: bytes | None) -> int:
        field = b"X-Api-Key: " + key + b"\r\n" if key is not None else b""
        return exchange(
            server.port, b"GET /login/ HTTP/1.1\r\nHost: a\r\n" + field + b"\r\n"
        ).status

    assert [get(b"k1") for _ in range(3)] == [200, 200, 429]
    assert [get(b"k2") for _ in range(3)] == [200, 200, 429]
    assert [get(None) for _ in range(3)] == [200, 200, 429]


def test_max_connections_per_ip_holds_across_workers(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=2, max_connections_per_ip=4))
    admitted: list[RawConnection] = []
    refused = 0
    try:
        for _ in range(16):
            conn, response = attempt(server.port)
            if response is None:
                refused += 1
            else:
                assert response.status == 200
                admitted.append(conn)
        assert (len(admitted), refused) == (4, 12)
        assert counter(server, "connections_refused", 12) == 12
        admitted.pop().close()  # room for exactly one more, whichever worker takes it
        deadline = time.monotonic() + 5
        while True:
            conn, response = attempt(server.port)
            if response is not None:
                admitted.append(conn)
                break
            assert time.monotonic() < deadline, "the closed connection was never released"
            time.sleep(0.1)
        assert attempt(server.port)[1] is None
    finally:
        for conn in admitted:
            conn.close()


def test_a_crashed_workers_connections_stop_counting(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1, max_connections_per_ip=2))
    first, second = attempt(server.port), attempt(server.port)
    assert first[1] is not None and second[1] is not None
    assert attempt(server.port)[1] is None
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)
    server.wait_for_log(rf"worker 0 \(pid {worker}\) killed by signal 9")
    server.wait_for_log(rf"worker 0 started \(pid (?!{worker}\b)\d+")
    for conn, _ in (first, second):
        assert conn.is_closed(5)
        conn.close()
    deadline = time.monotonic() + 10
    again: list[RawConnection] = []
    try:
        while len(again) < 2:
            conn, response = attempt(server.port)
            if response is not None:
                again.append(conn)
            else:
                assert time.monotonic() < deadline, "the dead worker's connections still count"
                time.sleep(0.1)
    finally:
        for conn in again:
            conn.close()


def test_at_max_connections_a_worker_stops_accepting_until_one_closes(start_bext: Start) -> None:
    server = start_bext(config(ROUTES, workers=1, max_connections=2))
    a, b = attempt(server.port)[0], attempt(server.port)[0]
    c = RawConnection(server.port, timeout=10)
    d = RawConnection(server.port, timeout=10)
    try:
        c.send(GET)
        assert waits(c, 1.0)  # queued in the kernel: no handshake, no reset, no answer
        a.close()
        assert c.read_response().status == 200
        d.send(GET)
        assert waits(d, 1.0)  # full again (b and c)
        b.close()
        assert d.read_response().status == 200
    finally:
        for conn in (a, b, c, d):
            conn.close()
    lines = [line for line in server.stderr().splitlines()
             if "server.max_connections = 2" in line]  # fmt: skip
    assert len(lines) == 1, lines  # paused twice, said once (per minute)
    assert "not accepting new ones" in lines[0]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    for index, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(paths[1]), append=index > 0)
    return paths


def with_tls(text: str, files: tuple[Path, Path, Path], http3: bool = False) -> str:
    tls = f'[server.tls]\nport = 0\ncert = "{files[1]}"\nkey = "{files[2]}"\n'
    if http3:
        tls += "http3 = true\n"
    return text.replace("\n\n", f"\n\n{tls}\n", 1)


def test_a_tls_connection_waits_for_room_instead_of_a_reset(
    start_bext: Start, tls_files: tuple[Path, Path, Path]
) -> None:
    """The plain port holds the worker's only slot: a TLS client is not handshaked and
    reset, it waits in the queue and is served once the plain connection closes."""
    server = start_bext(with_tls(config(ROUTES, workers=1, max_connections=1), tls_files))
    plain = attempt(server.port)[0]
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    outcome: list[object] = []

    def tls_client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
                tls.sendall(GET)
                outcome.append(tls.recv(65536))
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=tls_client)
    thread.start()
    try:
        time.sleep(1.0)
        assert thread.is_alive() and not outcome  # still waiting for its handshake
    finally:
        plain.close()
        thread.join(15)
    assert outcome and isinstance(outcome[0], bytes), outcome
    assert outcome[0].startswith(b"HTTP/1.1 200 OK")


def test_max_connections_per_ip_counts_http3_with_tcp(
    start_bext: Start, tls_files: tuple[Path, Path, Path]
) -> None:
    text = with_tls(config(ROUTES, workers=1, max_connections_per_ip=1), tls_files, http3=True)
    server = start_bext(text)

    async def over_http3() -> int:
        async with h3_connect(server.tls_port, tls_files[0]) as client:
            response = await client.request("GET", "/", authority=f"localhost:{server.tls_port}")
            return response.status

    held, response = attempt(server.port)
    assert response is not None
    with pytest.raises(ConnectionError):  # CONNECTION_REFUSED: the address has its one
        run(over_http3(), timeout=10)
    held.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert run(over_http3(), timeout=10) == 200
            break
        except ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_a_flood_on_the_plain_port_does_not_starve_the_tls_port(
    start_bext: Start, tls_files: tuple[Path, Path, Path]
) -> None:
    """One slot, five plain connections queued before a TLS one: when the slot frees, the
    listeners take turns, so the TLS client is among the first two served, not the last."""
    server = start_bext(with_tls(config(ROUTES, workers=1, max_connections=1), tls_files))
    holder = attempt(server.port)[0]
    queued = [RawConnection(server.port, timeout=10) for _ in range(5)]
    for conn in queued:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    order: list[str] = []
    tls_done = threading.Event()

    def tls_client() -> None:
        try:
            with socket.create_connection(("127.0.0.1", server.tls_port), timeout=15) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
                tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                if tls.recv(65536).startswith(b"HTTP/1.1 200"):
                    order.append("tls")
        finally:
            tls_done.set()

    thread = threading.Thread(target=tls_client)
    thread.start()
    try:
        time.sleep(0.5)
        holder.close()
        deadline = time.monotonic() + 20
        pending = list(queued)
        while (pending or not tls_done.is_set()) and time.monotonic() < deadline:
            for conn in list(pending):
                if not waits(conn, 0.05):
                    assert conn.read_response().status == 200
                    conn.close()
                    pending.remove(conn)
                    order.append("plain")
    finally:
        thread.join(20)
        for conn in queued:
            conn.close()
    assert order.count("plain") == 5 and "tls" in order, order
    assert order.index("tls") <= 1, order
