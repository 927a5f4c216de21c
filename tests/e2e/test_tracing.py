"""Request ids and W3C trace context through a real master to a real upstream."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.origin import Answer, Origin, cache_config
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    server.route("/", lambda request: Answer(200, [("Content-Type", "text/plain")], b"ok\n"))
    yield server
    server.stop()


def start(start_bext: Start, origin: Origin, log: Path, trusted: str = "") -> BextProcess:
    proxies = {"trusted_proxies": [trusted]} if trusted else {}
    return start_bext(cache_config(origin, None, access=str(log), workers=1, **proxies))


def access_line(log: Path, needle: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if needle in line:
                return line
        time.sleep(0.1)  # the access log is flushed in batches, at least once a second
    raise AssertionError(f"no access log line with {needle}")


def test_the_request_id_is_the_same_in_the_response_the_upstream_and_the_log(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = start(start_bext, origin, log)
    response = httpx.get(server.base_url + "/", headers={"X-Request-ID": "forged-by-client"})
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)  # the client is not a trusted proxy
    assert origin.seen[-1].headers["x-request-id"] == rid
    line = access_line(log, f"id={rid}")
    assert line.startswith("127.0.0.1 - - [") and '"GET / HTTP/1.1" 200 3 ' in line
    assert f"upstream=http://127.0.0.1:{origin.port}" in line and "upstream_time=" in line


def test_a_trusted_proxy_keeps_its_request_id(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    server = start(start_bext, origin, tmp_path / "access.log", trusted="127.0.0.1")
    response = httpx.get(server.base_url + "/", headers={"X-Request-ID": "lb-1234"})
    assert response.headers["x-request-id"] == "lb-1234"
    assert origin.seen[-1].headers["x-request-id"] == "lb-1234"


def test_traceparent_is_continued_with_a_new_parent_or_started(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = start(start_bext, origin, log)
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    httpx.get(server.base_url + "/", headers={"traceparent": incoming, "tracestate": "vendor=x"})
    sent = origin.seen[-1].headers
    match = TRACEPARENT.fullmatch(sent["traceparent"])
    assert match is not None
    assert match.group(1) == "0af7651916cd43dd8448eb211c80319c"  # the same trace
    assert match.group(2) != "b7ad6b7169203331"  # bext's own span is the new parent
    assert match.group(3) == "00"  # not sampled upstream either
    assert sent["tracestate"] == "vendor=x"
    access_line(log, "trace=0af7651916cd43dd8448eb211c80319c")

    httpx.get(server.base_url + "/", headers={"traceparent": "00-garbage", "tracestate": "v=1"})
    fresh = origin.seen[-1].headers
    match = TRACEPARENT.fullmatch(fresh["traceparent"])
    assert match is not None and match.group(3) == "01"  # a new trace, sampled
    assert "tracestate" not in fresh
    httpx.get(server.base_url + "/")
    other = TRACEPARENT.fullmatch(origin.seen[-1].headers["traceparent"])
    assert other is not None and other.group(1) != match.group(1)


def test_server_timing_when_asked_for(start_bext: Start, origin: Origin, tmp_path: Path) -> None:
    text = config(
        f"""
[metrics]
server_timing = true

[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"

[[route_rules]]
pattern = "/ok"
respond = {{ status = 200, body = "fixed" }}

[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        workers=1,
    )
    server = start_bext(text)
    proxied = httpx.get(server.base_url + "/").headers["server-timing"]
    assert re.fullmatch(r"edge;dur=\d+\.\d, upstream;dur=\d+\.\d", proxied), proxied
    fixed = httpx.get(server.base_url + "/ok")
    assert re.fullmatch(r"edge;dur=\d+\.\d", fixed.headers["server-timing"])
    assert fixed.text == "fixed"
