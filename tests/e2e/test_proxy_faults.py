"""Upstream faults through a real master: what the client sees, and what is retried."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, fake_upstream, free_port
from tests.support.rawhttp import RawConnection
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]


def proxy_config(*ports: int, read_timeout_ms: int = 30000, workers: int = 1) -> str:
    servers = "".join(
        f'[[upstreams.app.servers]]\nurl = "http://127.0.0.1:{port}"\n' for port in ports
    )
    return config(
        f"""
[upstreams.app]
connect_timeout_ms = 1000
read_timeout_ms = {read_timeout_ms}
{servers}
[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        workers=workers,
    )


def test_upstream_down_gives_502_with_clear_page(start_bext: Start) -> None:
    server = start_bext(proxy_config(free_port()))
    r = httpx.get(server.base_url + "/x")
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/plain")
    assert "upstream server is unavailable" in r.text
    r = httpx.get(server.base_url + "/x", headers={"Accept": "text/html,*/*"})
    assert r.status_code == 502 and r.text.startswith("<!DOCTYPE html>")
    server.wait_for_log(
        r"upstream app: connect to http://127\.0\.0\.1:\d+ failed: Connection refused"
    )
    status = subprocess.run(
        [sys.executable, "-m", "bext", "status", "--json", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    counters = json.loads(status.stdout)["counters"]
    assert counters["upstream_errors"] >= 2 and counters["status_5xx"] >= 2


def test_upstream_hang_gives_504_after_read_timeout(start_bext: Start) -> None:
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port, read_timeout_ms=700))
        started = time.monotonic()
        r = httpx.get(server.base_url + "/hang", timeout=10)
        assert r.status_code == 504
        assert 0.6 < time.monotonic() - started < 3
        server.wait_for_log("upstream app: upstream read timed out")
        assert len(upstream.requests) == 1  # a timeout is not retried


def test_upstream_dying_mid_response_truncates(start_bext: Start) -> None:
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port))
        with RawConnection(server.port) as conn:
            conn.send(b"GET /die HTTP/1.1\r\nHost: t\r\n\r\n")
            with pytest.raises(ConnectionError):
                conn.read_response()  # 100000 bytes announced, never all delivered
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.base_url + "/die")


@pytest.mark.parametrize("path", ["/interim", "/interim-split"])
def test_interim_responses_are_dropped_and_the_final_one_relayed(
    start_bext: Start, path: str
) -> None:
    # 103 Early Hints or 100 Continue before the 200, in one read or two: the client gets
    # the 200 (interim responses are not forwarded), well before the read timeout, and the
    # upstream connection stays in step for the next request.
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port, read_timeout_ms=3000))
        with httpx.Client(timeout=10) as client:
            for _ in range(3):
                started = time.monotonic()
                r = client.get(server.base_url + path)
                assert r.status_code == 200 and r.text == f"ok {upstream.port}"
                assert "link" not in r.headers  # the 103's field stays with the 103
                assert time.monotonic() - started < 2
        assert upstream.connections == 1 and len(upstream.requests) == 3


def test_one_of_two_servers_down_no_request_fails(start_bext: Start) -> None:
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(free_port(), upstream.port, workers=2))
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(40):
                r = client.get("/ok")
                assert r.status_code == 200 and r.text == f"ok {upstream.port}"
        for _ in range(10):  # fresh connections too
            assert httpx.get(server.base_url + "/ok").status_code == 200


def test_round_robin_spreads_requests(start_bext: Start) -> None:
    with fake_upstream() as a, fake_upstream() as b:
        server = start_bext(proxy_config(a.port, b.port))
        with httpx.Client(base_url=server.base_url) as client:
            seen = [client.get("/ok").text for _ in range(20)]
        assert seen.count(f"ok {a.port}") == 10 and seen.count(f"ok {b.port}") == 10


def test_post_never_retried_when_it_may_have_been_processed(start_bext: Start) -> None:
    with fake_upstream() as first, fake_upstream() as second:
        server = start_bext(proxy_config(first.port, second.port))
        r = httpx.post(server.base_url + "/close", content=b"payment=1")
        assert r.status_code == 502
        assert len(first.requests) + len(second.requests) == 1


def test_idempotent_request_retried_on_early_close(start_bext: Start) -> None:
    with fake_upstream() as first, fake_upstream() as second:
        server = start_bext(proxy_config(first.port, second.port))
        r = httpx.get(server.base_url + "/close")
        assert r.status_code == 502  # both closed: tried on each server once, no more
        assert len(first.requests) == 1 and len(second.requests) == 1


def test_stale_keepalive_connections_are_retried_transparently(start_bext: Start) -> None:
    """The upstream closes every connection right after answering (the keep-alive race):
    requests that are safe to repeat go again on a fresh connection."""
    with fake_upstream() as upstream:
        upstream.close_after_response = True
        server = start_bext(proxy_config(upstream.port))
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(30):
                assert client.get("/ok").status_code == 200
                assert client.put("/ok", content=b"x").status_code == 200


def test_idle_closed_pool_connections_never_fail_a_post(start_bext: Start) -> None:
    """The upstream closes idle keep-alive connections (its keep-alive timeout): bext
    notices before reusing one, so even a POST, which is never retried, goes through."""
    with fake_upstream() as upstream:
        upstream.idle_timeout = 0.1
        server = start_bext(proxy_config(upstream.port))
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(8):
                assert client.post("/ok", content=b"payment").status_code == 200
                time.sleep(0.2)  # every pooled connection has gone stale meanwhile
        posts = [head for head in upstream.requests if head.startswith(b"POST")]
        assert len(posts) == 8  # each POST reached the app exactly once


def test_keepalive_pool_reuses_connections(start_bext: Start) -> None:
    upstream: FakeUpstream
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port))
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(50):
                assert client.get("/ok").status_code == 200
        assert upstream.connections <= 2


def test_upstream_error_lines_name_the_server_and_the_real_outcome(start_bext: Start) -> None:
    """One line per failure, naming the server; "giving up" when nothing is left to try."""
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port, read_timeout_ms=500))
        assert httpx.get(server.base_url + "/hang", timeout=10).status_code == 504
        line = server.wait_for_log(r"upstream app: upstream read timed out \(GET /hang[^\n]*")
        assert f"on http://127.0.0.1:{upstream.port}" in line.group(0)
        assert line.group(0).endswith("; giving up")
    down = free_port()
    server = start_bext(proxy_config(down))
    assert httpx.get(server.base_url + "/x").status_code == 502
    line = server.wait_for_log(r"upstream app: connect to [^\n]*")
    assert line.group(0).endswith(f"(GET /x on http://127.0.0.1:{down}); giving up")
    assert "trying" not in server.stderr()  # one server: there was nothing to try next


def test_a_client_gone_while_its_request_waits_frees_the_warm_upstream_connection(
    start_bext: Start,
) -> None:
    """A GET on a warm pooled connection goes out without a task (the proxy's callback
    path): when its client resets the connection, the upstream connection is closed at
    once, not at the read timeout, and the next request still gets an answer."""
    with fake_upstream() as upstream:
        server = start_bext(proxy_config(upstream.port, workers=1))
        with httpx.Client(base_url=server.base_url) as client:
            assert client.get("/ok").status_code == 200  # the pool now holds a warm one
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 5
            while upstream.heads_seen < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert upstream.heads_seen == 2
            # Reset, not FIN: a FIN may be a half-close, after which the answer is still
            # owed (and the request waits for it, as before the callback path).
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 5  # the read timeout is 30 s
        while upstream.hangups == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.hangups == 1
        assert upstream.connections == 1  # the /hang went over the warm connection
        assert httpx.get(server.base_url + "/ok").text == f"ok {upstream.port}"
