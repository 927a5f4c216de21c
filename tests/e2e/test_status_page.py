"""``/__bext/status`` and ``/__bext/status.json``: the numbers, the headers, the gate, and the
page itself in a real headless Chromium against a real master, read through its DOM."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.observe.prometheus import MetricsExporter
from bext.observe.status_page import CSP, histogram_quantile, status_data
from bext.shm.counters import SlotCounters
from bext.shm.layout import Header, Segment
from bext.worker.pipeline import Pipeline
from tests.support.origin import Answer, Origin
from tests.support.server import BextProcess, config

REPO = Path(__file__).resolve().parents[2]
NONE = "\u2013"  # what the page shows before it has a value

SITE = """
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:9"

[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "site" }
"""


def ask(pipe: Pipeline, target: bytes, peer: str = "127.0.0.1") -> Response:
    request = Request("GET", target, [], "1.1", "http", peer, 1, 80, EMPTY_BODY, 0.0)
    result = pipe.handle(request)
    assert isinstance(result, Response)
    return result


# -- the numbers, in process ---------------------------------------------------------------


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
    # 8 under 5 ms, 1 in (10, 25] ms, 1 in (100, 250] ms, none above
    cumulative = [8, 8, 9, 9, 9, 10, 10]
    assert histogram_quantile(0.5, cumulative, bounds) == pytest.approx(0.003125)
    assert histogram_quantile(0.9, cumulative, bounds) == pytest.approx(0.025)
    assert histogram_quantile(0.95, cumulative, bounds) == pytest.approx(0.175)
    assert histogram_quantile(0.99, cumulative, bounds) == pytest.approx(0.235)
    # A rank in the +Inf bucket: the highest finite bound, as Prometheus answers.
    assert histogram_quantile(0.99, [0, 0, 0, 0, 0, 1, 5], bounds) == 0.25
    assert histogram_quantile(0.5, [0] * 7, bounds) is None


def test_status_json_counts_a_known_sequence() -> None:
    segment = Segment()
    cfg = parse_config(tomllib.loads(SITE), base_dir=Path("/srv"))
    pipe = Pipeline(cfg, segment)
    # This process as a worker of the master "os.getppid()" (which it is a child of), and
    # a block left by a worker that has exited: not listed.
    counters = SlotCounters(segment, slot=0, generation=3, pid=os.getpid())
    SlotCounters(segment, slot=1, generation=2, pid=2**22 + 12345)
    for _ in range(8):
        counters.response(200, 100, route=0, duration=0.003)
    counters.response(404, 50, route=0, duration=0.02)
    counters.response(503, 10, route=-1, duration=0.2)
    counters.received(1234)
    counters.connection_opened(0)
    counters.connection_opened(0)
    counters.connection_opened(1)
    counters.connection_closed(0)
    counters.connection_opened(2)
    for outcome in ("hit", "hit", "hit", "stale", "miss", "bypass", "stored"):
        counters.cache(outcome)
    for outcome in ("inspected", "inspected", "inspected", "blocked", "detected"):
        counters.waf(outcome)
    counters.rate_limited()
    counters.rate_limited()
    for seconds in (0.002, 0.002, 0.04, 3.0):
        counters.metrics.upstream_time(0, seconds)
    counters.metrics.upstream_error(0, "connect")
    counters.metrics.retry(0)
    segment.words[Header.RELOADS] = 2
    segment.words[Header.WORKER_RESTARTS] = 1

    answer = ask(pipe, b"/__bext/status.json")
    assert answer.status == 200
    assert (b"Cache-Control", b"no-store") in answer.headers
    assert (b"Content-Type", b"application/json") in answer.headers
    data = json.loads(answer.body)
    assert abs(data["time"] - time.time()) < 5

    [worker] = data["workers"]
    assert worker["slot"] == 0 and worker["pid"] == os.getpid() and worker["generation"] == 3
    assert 0 <= worker["heartbeat_age"] < 5
    assert worker["rss"] > 0 and worker["cpu_seconds"] >= 0 and worker["requests"] == 10
    assert data["generation"] == 3
    assert data["master"]["pid"] == os.getppid()
    assert data["memory"]["total_rss"] >= worker["rss"]

    totals = data["totals"]
    assert totals["requests"] == 10
    assert totals["status"] == {"1xx": 0, "2xx": 8, "3xx": 0, "4xx": 1, "5xx": 1}
    assert totals["bytes_in"] == 1234 and totals["bytes_out"] == 8 * 100 + 50 + 10
    assert totals["open_connections"] == 3  # 4 opened, 1 closed
    assert data["connections"]["open"] == {"1.1": 1, "2": 1, "3": 1}
    assert data["connections"]["accepted"] == {"1.1": 2, "2": 1, "3": 1}

    latency = data["latency"]
    assert latency["count"] == 10
    assert latency["sum"] == pytest.approx(8 * 0.003 + 0.02 + 0.2)
    assert latency["p50"] == pytest.approx(0.003125)
    assert latency["p95"] == pytest.approx(0.175)
    assert latency["p99"] == pytest.approx(0.235)

    assert data["cache"] == {
        "hit": 3, "miss": 1, "stale": 1, "revalidated": 0, "bypass": 1, "stored": 1,
        "hit_ratio": 0.8,
    }  # fmt: skip
    assert data["waf"] == {"inspected": 3, "blocked": 1, "detected": 1}
    assert data["rate_limited"] == 2
    assert data["reloads"] == 2 and data["worker_restarts"] == 1

    [upstream] = data["upstreams"]
    assert upstream["name"] == "app"
    group = pipe.upstreams["app"]
    assert upstream["servers"] == [{"url": url, "up": up} for url, up in group.servers_up()]
    assert [server["url"] for server in upstream["servers"]] == ["http://127.0.0.1:9"]
    response_time = upstream["response_time"]
    assert response_time["count"] == 4
    assert response_time["sum"] == pytest.approx(3.044)
    assert response_time["p50"] == pytest.approx(0.005)  # rank 2, the 2nd of 2 in [0, 5 ms]
    assert response_time["p95"] == pytest.approx(2.5 + 2.5 * (3.8 - 3))  # in (2.5, 5]
    assert upstream["errors"]["connect"] == 1 and upstream["retries"] == 1

    # The same function the endpoint calls, for tools and tests.
    direct = status_data(MetricsExporter(segment, cfg, pipe.upstreams.values()))
    assert direct["totals"] == totals and direct["latency"] == latency


def test_the_page_and_its_headers() -> None:
    pipe = Pipeline(parse_config(tomllib.loads(SITE), base_dir=Path("/srv")), Segment())
    page = ask(pipe, b"/__bext/status")
    assert page.status == 200
    headers = dict(page.headers)
    assert headers[b"Content-Type"] == b"text/html; charset=utf-8"
    assert headers[b"Cache-Control"] == b"no-store"
    assert headers[b"Content-Security-Policy"] == CSP
    assert CSP == (
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"connect-src 'self'; img-src 'self' data:"
    )
    html = page.body.decode()
    assert 'fetch("status.json"' in html  # relative: works under any prefix
    for needed in ('id="requests-total"', 'id="rps"', 'id="rps-spark"', 'id="error-rate"',
                   'id="latency-p99"', 'id="cache-hit-ratio"', 'id="waf-blocked"',
                   'id="upstreams"', 'id="workers"', 'id="memory-total"', 'id="conn-h2"'):  # fmt: skip
        assert needed in html
    # Self-contained: nothing loaded from anywhere else.
    for outside in ("http://", "https://", "<link", "src="):
        assert outside not in html
    assert ask(pipe, b"/__bext/status", peer="203.0.113.5").body == b"site"  # the admin gate
    assert ask(pipe, b"/__bext/status.json", peer="203.0.113.5").body == b"site"


def test_the_page_ships_as_package_data() -> None:
    """``bext/templates/*/*`` is what pyproject.toml ships; the page must be one of those."""
    page = REPO / "bext" / "templates" / "status" / "status.html"
    assert page.is_file()
    assert not (page.parent / "template.toml").exists()  # not a `bext new` template
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "templates/*/*" in package_data["package-data"]["bext"]


# -- a real master -------------------------------------------------------------------------


ROUTES = """
[[route_rules]]
pattern = "/missing/**"
respond = { status = 404, body = "no" }

[[route_rules]]
pattern = "/broken/**"
respond = { status = 500, body = "broken" }

[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "hello" }
"""


def _status(base_url: str) -> dict[str, Any]:
    answer = httpx.get(f"{base_url}/__bext/status.json", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    data: dict[str, Any] = answer.json()
    return data


def test_status_json_from_a_real_master(start_bext: Callable[..., BextProcess]) -> None:
    server = start_bext(config(ROUTES))
    base = server.base_url
    before = _status(base)
    assert sorted(worker["pid"] for worker in before["workers"]) == server.worker_pids()
    assert {worker["slot"] for worker in before["workers"]} == {0, 1}
    assert before["master"]["pid"] == server.pid and before["master"]["rss"] > 0
    with httpx.Client(base_url=base, timeout=5) as client:
        for _ in range(7):
            assert client.get("/").status_code == 200
        for _ in range(3):
            assert client.get("/missing/x").status_code == 404
        for _ in range(2):
            assert client.get("/broken/x").status_code == 500
    # The first status.json request counts too (once answered), and the counters are
    # bumped after the last byte is written: poll until they settle, then compare.
    deadline = time.monotonic() + 5
    while True:
        after = _status(base)
        if after["totals"]["requests"] >= before["totals"]["requests"] + 13:
            break
        assert time.monotonic() < deadline, after["totals"]
        time.sleep(0.05)
    polls = after["totals"]["requests"] - before["totals"]["requests"] - 12
    delta = {
        k: after["totals"]["status"][k] - before["totals"]["status"][k]
        for k in after["totals"]["status"]
    }
    assert delta == {"1xx": 0, "2xx": 7 + polls, "3xx": 0, "4xx": 3, "5xx": 2}
    assert after["latency"]["count"] == after["totals"]["requests"]
    assert 0 < after["latency"]["p50"] <= 0.01  # answers from a respond route are quick
    assert after["latency"]["p50"] <= after["latency"]["p95"] <= after["latency"]["p99"]
    assert after["connections"]["accepted"]["1.1"] >= 2
    assert after["totals"]["bytes_out"] > before["totals"]["bytes_out"]
    assert after["upstreams"] == [] and after["reloads"] == 0 and after["worker_restarts"] == 0
    page = httpx.get(f"{base}/__bext/status", timeout=5)
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP.decode()


# -- a real browser ------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class DevTools:
    """A headless Chromium driven over the DevTools protocol (one page, synchronously)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(target for target in targets if target["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        )
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    def close(self) -> None:
        if hasattr(self, "_stack"):
            self._stack.close()
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # Its renderer and helper processes share the session it was started in.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


# Every element with an id under <main> and the header: its text and raw data-value.
READ_DOM = """JSON.stringify(Object.fromEntries(
  [...document.querySelectorAll('[id]')].map(e => [e.id,
    {text: e.textContent.trim(), value: e.getAttribute('data-value')}])
  .concat([['polls', {text: document.body.getAttribute('data-polls') || '0', value: null}],
           ['worker-rows', {text: String(document.querySelectorAll('#workers tr').length),
                            value: null}],
           ['servers-up', {text: [...document.querySelectorAll('#upstreams li')]
                            .map(li => li.getAttribute('data-up')).join(','), value: null}],
           ['spark-points', {text: document.querySelector('#rps-spark polyline')
                            .getAttribute('points'), value: null}]])))"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium not found (Debian: scripts/system-deps.sh test installs it)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    devtools = DevTools(binary, profile)
    try:
        yield devtools
    finally:
        devtools.close()


def _read(browser: DevTools) -> dict[str, dict[str, Any]]:
    text = browser.evaluate(READ_DOM)
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def _wait(browser: DevTools, ready: Callable[[dict[str, dict[str, Any]]], bool],
          timeout: float = 15) -> dict[str, dict[str, Any]]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        dom = _read(browser)
        if ready(dom):
            return dom
        assert time.monotonic() < deadline, dom
        time.sleep(0.2)


def _value(dom: dict[str, dict[str, Any]], key: str) -> float:
    raw = dom[key]["value"]
    assert raw not in (None, ""), (key, dom[key])
    return float(raw)


def test_the_page_live_in_chromium(
    start_bext: Callable[..., BextProcess], browser: DevTools, tmp_path: Path
) -> None:
    origin = Origin().start()
    origin.route("/api/slow", lambda request: Answer(200, [], b"slow", delay=0.03))
    try:
        routes = f"""
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"

[[route_rules]]
pattern = "/api/**"
proxy = "app"
{ROUTES}"""
        server = start_bext(config(routes))
        browser.call("Emulation.setDeviceMetricsOverride", width=1200, height=900,
                     deviceScaleFactor=1, mobile=False)  # fmt: skip
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{server.base_url}/__bext/status")
        deadline = time.monotonic() + 15
        while not browser.evaluate("!!document.getElementById('rps-spark')"):
            assert time.monotonic() < deadline, "the page never loaded"
            time.sleep(0.1)

        # The numbers appear: the page polled at least twice (a rate needs two polls).
        first = _wait(browser, lambda dom: int(dom["polls"]["text"]) >= 2)
        assert first["state"]["text"].startswith("live")
        assert int(first["worker-rows"]["text"]) == 2 == _value(first, "workers-count")
        assert first["master-pid"]["text"] == str(server.pid)
        assert first["rps"]["text"] not in ("", NONE)
        assert first["latency-p50"]["text"] not in ("", NONE)  # its own polls have latencies
        assert first["servers-up"]["text"] == "1"
        assert "app" in first["upstreams"]["text"]
        assert _value(first, "memory-total") > 0
        start_total = _value(first, "requests-total")

        # Traffic for a few seconds; the same page's numbers move.
        stop = threading.Event()
        sent = {"ok": 0, "5xx": 0}

        def traffic() -> None:
            with httpx.Client(base_url=server.base_url, timeout=5) as client:
                while not stop.is_set():
                    for _ in range(20):
                        client.get("/")
                        sent["ok"] += 1
                    client.get("/api/slow")
                    client.get("/broken/x")
                    sent["5xx"] += 1
                    # an uneven rate, so that the sparkline has a shape
                    time.sleep((0.01, 0.05, 0.15, 0.05)[int(time.monotonic()) % 4])

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            busy = _wait(
                browser,
                lambda dom: (
                    _value(dom, "requests-total") >= start_total + 100
                    and (_value(dom, "rps") or 0) > 5
                    and (_value(dom, "error-rate") or 0) > 0
                ),
                timeout=20,
            )
            time.sleep(8)  # some seconds of sparkline for the screenshot
        finally:
            stop.set()
            thread.join(10)
        assert _value(busy, "requests-total") > start_total
        assert _value(busy, "status-5xx") >= 1
        assert busy["requests-total"]["text"] != first["requests-total"]["text"]
        assert busy["spark-points"]["text"].count(",") >= 2
        busy_points = busy["spark-points"]["text"]
        shot = browser.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        artifact = tmp_path / "status-page.png"
        artifact.write_bytes(png)
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(artifact, REPO / "docs" / "status-page.png")

        # Everything sent is counted, and the page catches up with it.
        total_sent = sent["ok"] + 2 * sent["5xx"]
        settled = _wait(
            browser,
            lambda dom: (
                _value(dom, "requests-total") >= start_total + total_sent
                and _value(dom, "status-5xx") >= sent["5xx"]
            ),
        )
        assert settled["spark-points"]["text"] != busy_points  # still moving
        upstream_text = settled["upstreams"]["text"]
        assert "1/1 up" in upstream_text and "p95" in upstream_text
    finally:
        origin.stop()
