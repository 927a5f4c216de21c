"""``[metrics] statsd``: the master pushes counter deltas as StatsD lines over UDP.

The end-to-end tests start a real master pointed at a UDP socket of the test and add up
what arrives; the unit tests check the line format, the timer approximation and the
batching without any socket, and the sender's baselines (start, reload, binary upgrade
hand-over) against a segment of the test's own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from bext.config.schema import MetricsConfig
from bext.master import statsd
from bext.shm.counters import SlotCounters
from bext.shm.layout import Segment
from tests.e2e.test_supervisor import rewrite
from tests.support.server import BextProcess, bext_cli, config

Start = Callable[..., BextProcess]

ROUTES = """
[[route_rules]]
pattern = "/ok"
respond = { status = 200, body = "ok" }

[[route_rules]]
pattern = "/gone"
respond = { status = 404, body = "no" }
"""


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


class Received:
    """Every StatsD line that arrived, parsed: ``(name, value, type, rate)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, float, str, float]] = []
        self.datagrams: list[bytes] = []

    def add(self, datagram: bytes) -> None:
        self.datagrams.append(datagram)
        for line in datagram.decode().split("\n"):
            name, _, rest = line.partition(":")
            value, kind, *extra = rest.split("|")
            rate = float(extra[0][1:]) if extra else 1.0
            self.lines.append((name, float(value), kind, rate))

    def values(self, name: str, kind: str = "c") -> list[float]:
        return [value for n, value, k, _ in self.lines if n == name and k == kind]

    def total(self, name: str) -> int:
        return int(sum(self.values(name)))

    def counters(self) -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for name, value, kind, _ in self.lines:
            if kind == "c":
                sums[name] += int(value)
        return dict(sums)


def collect(sock: socket.socket, received: Received, done: Callable[[], bool],
            timeout: float = 10.0, settle: float = 2.5) -> None:  # fmt: skip
    """Receive until ``done()``, then ``settle`` seconds more (late or doubled deltas)."""
    deadline = time.monotonic() + timeout
    settled: float | None = None
    while True:
        now = time.monotonic()
        if settled is None and done():
            settled = now + settle
        if settled is not None and now >= settled:
            return
        assert now < deadline, f"timed out; received {received.counters()}"
        with contextlib.suppress(TimeoutError):
            received.add(sock.recv(65536))


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def metrics_config(port: int, interval: str = "1s") -> str:
    return config(ROUTES) + (
        f'\n[metrics]\nstatsd = "127.0.0.1:{port}"\nstatsd_interval = "{interval}"\n'
    )


# -- a real master ---------------------------------------------------------------------------


def test_master_sends_request_counts_statuses_and_durations(
    start_bext: Start, receiver: socket.socket
) -> None:
    port = receiver.getsockname()[1]
    server = start_bext(metrics_config(port))
    server.wait_for_log(r"statsd: sending to 127\.0\.0\.1:\d+ every 1s as bext\.\*")
    for _ in range(7):
        assert get(server.port, "/ok") == 200
    for _ in range(3):
        assert get(server.port, "/gone") == 404

    received = Received()
    collect(receiver, received, lambda: received.total("bext.requests") >= 10)
    assert received.total("bext.requests") == 10
    assert received.total("bext.request.status.200") == 7
    assert received.total("bext.request.status.404") == 3
    assert received.total("bext.bytes_out") > 0
    assert received.total("bext.bytes_in") > 0
    # One timer sample per interval, standing for that interval's requests (@1/count).
    timers = [(value, rate) for name, value, kind, rate in received.lines
              if name == "bext.request.duration" and kind == "ms"]  # fmt: skip
    assert timers
    assert round(sum(1 / rate for _, rate in timers)) == 10
    assert all(0 <= value < 5000 for value, _ in timers)
    assert received.values("bext.connections.open", "g")  # the gauge goes every time
    assert all(value >= 0 for _, value, _, _ in received.lines)
    assert all(len(datagram) <= statsd.MAX_DATAGRAM for datagram in received.datagrams)


def test_a_reload_neither_repeats_nor_reverses_deltas(
    start_bext: Start, receiver: socket.socket
) -> None:
    port = receiver.getsockname()[1]
    server = start_bext(metrics_config(port))
    for _ in range(5):
        assert get(server.port, "/ok") == 200
    received = Received()
    collect(receiver, received, lambda: received.total("bext.requests") >= 5, settle=1.5)
    assert received.total("bext.requests") == 5

    # The new generation's workers write other blocks of the same segment; the master
    # keeps its baseline (and a changed interval or prefix takes effect at once).
    rewrite(server, metrics_config(port, interval="2s"))
    server.signal(signal.SIGHUP)
    server.wait_for_log("reload: generation 2 serving")
    for _ in range(4):
        assert get(server.port, "/ok") == 200
    for _ in range(2):
        assert get(server.port, "/gone") == 404
    collect(receiver, received, lambda: received.total("bext.requests") >= 11, settle=4.5)

    assert received.total("bext.requests") == 11
    assert received.total("bext.request.status.200") == 9
    assert received.total("bext.request.status.404") == 2
    counters = [value for _, value, kind, _ in received.lines if kind == "c"]
    assert counters and min(counters) > 0  # never a negative (or empty) delta
    assert max(received.values("bext.requests")) <= 11


def test_a_binary_upgrade_neither_loses_nor_doubles_deltas(
    start_bext: Start, receiver: socket.socket
) -> None:
    """The old master sends what it has and hands its baseline to the new one, while a
    client keeps sending requests through the upgrade."""
    port = receiver.getsockname()[1]
    server = start_bext(metrics_config(port))
    old_master = server.pid
    answered = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status = get(server.port, "/ok")
            except OSError:
                answered["failed"] += 1
            else:
                answered["ok" if status == 200 else "failed"] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(1.5)
        result = bext_cli(server, "upgrade")
        assert result.returncode == 0, result.stderr
        server.wait_for_log(rf"master {old_master} exiting", timeout=40)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    received = Received()
    total = answered["ok"] + answered["failed"]
    collect(receiver, received, lambda: received.total("bext.requests") >= answered["ok"],
            timeout=15, settle=3.0)  # fmt: skip
    assert answered["ok"] > 20
    assert answered["ok"] <= received.total("bext.requests") <= total, answered
    assert received.total("bext.request.status.200") == received.total("bext.requests")
    assert bext_cli(server, "stop").returncode == 0


def test_unreachable_statsd_server_does_not_disturb_the_master(
    start_bext: Start, receiver: socket.socket
) -> None:
    port = receiver.getsockname()[1]
    receiver.close()  # nothing listens there: sendto may fail (ECONNREFUSED), silently
    server = start_bext(metrics_config(port))
    for _ in range(3):
        assert get(server.port, "/ok") == 200
    time.sleep(2.5)
    assert get(server.port, "/ok") == 200
    assert server.proc is not None and server.proc.poll() is None
    assert "Traceback" not in server.stderr()


# -- the sender against a segment of the test's own -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sender_starts_from_current_totals_and_hands_over_on_upgrade(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(statsd.BASELINE_ENV, raising=False)
    segment = Segment()
    worker = SlotCounters(segment, 0, 1, 4242)
    for _ in range(50):  # history of a segment inherited from an earlier master
        worker.response(200, 10, duration=0.002)
    clock = Clock()
    sender = statsd.StatsdSender(segment, clock)
    cfg = MetricsConfig(statsd=receiver.getsockname(), statsd_interval=10.0)

    def drain() -> Received:
        got = Received()
        while True:
            try:
                got.add(receiver.recv(65536))
            except TimeoutError:
                return got

    sender.tick(cfg)
    clock.now += 5
    sender.tick(cfg)
    assert not drain().lines  # not due yet
    for _ in range(3):
        worker.response(404, 10, duration=0.004)
    clock.now += 5
    sender.tick(cfg)
    got = drain()
    assert got.counters() == {"bext.requests": 3, "bext.request.status.404": 3,
                              "bext.bytes_out": 30}  # fmt: skip
    assert got.values("bext.request.duration", "ms") == [4.0]

    # Binary upgrade: the old sender flushes and hands its baseline to the new master.
    worker.response(200, 10, duration=0.001)
    environment = sender.hand_over(cfg)
    assert drain().counters()["bext.requests"] == 1
    sender.tick(cfg, paused=True)
    clock.now += 60
    sender.tick(cfg, paused=True)
    assert not drain().lines  # paused while the new master runs
    worker.response(200, 10, duration=0.001)  # between the hand-over and the new master
    monkeypatch.setenv(statsd.BASELINE_ENV, environment[statsd.BASELINE_ENV])
    successor = statsd.StatsdSender(segment, clock)
    worker.response(200, 10, duration=0.001)
    successor.tick(cfg)
    clock.now += 10
    successor.tick(cfg)
    assert drain().counters()["bext.requests"] == 2  # neither lost nor counted twice

    # Turned off by a reload, then on again: it starts afresh, no backlog.
    successor.tick(MetricsConfig())
    worker.response(200, 10)
    successor.tick(cfg)
    clock.now += 10
    successor.tick(cfg)
    assert "bext.requests" not in drain().counters()
    sender.close(cfg, flush=False)
    successor.close(cfg)


def test_inherited_baseline_that_is_not_json_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    segment = Segment()
    worker = SlotCounters(segment, 0, 1, 4242)
    worker.response(200, 10)
    monkeypatch.setenv(statsd.BASELINE_ENV, "{not json")
    sender = statsd.StatsdSender(segment, Clock())
    assert sender.hand_over(MetricsConfig()) != {}
    baseline = json.loads(sender.hand_over(MetricsConfig())[statsd.BASELINE_ENV])
    assert baseline["requests"] == 1  # the current totals, not zero


# -- lines and datagrams, no sockets --------------------------------------------------------------


def test_lines_use_gunicorns_names_and_a_sampled_mean_timer() -> None:
    gained = {"requests": 4, "request.status.200": 3, "request.status.4xx": 1,
              statsd.DURATION_COUNT: 4, statsd.DURATION_SUM_US: 50_000, "bytes_in": 400,
              "bytes_out": 1200, "cache.hit": 2, "cache.miss": 1, "cache.stale": 1,
              "waf.blocked": 1, "rate_limited": 1}  # fmt: skip
    assert statsd.format_lines("web.bext", gained, 7) == [
        "web.bext.requests:4|c",
        "web.bext.request.status.200:3|c",
        "web.bext.request.status.4xx:1|c",
        "web.bext.request.duration:12.500|ms|@0.25",
        "web.bext.bytes_in:400|c",
        "web.bext.bytes_out:1200|c",
        "web.bext.cache.hit:2|c",
        "web.bext.cache.miss:1|c",
        "web.bext.cache.stale:1|c",
        "web.bext.waf.blocked:1|c",
        "web.bext.rate_limited:1|c",
        "web.bext.connections.open:7|g",
    ]
    # One request: a plain sample; nothing happened: the gauge alone (never negative).
    one = statsd.format_lines("bext", {"requests": 1, statsd.DURATION_COUNT: 1,
                                       statsd.DURATION_SUM_US: 1500}, 0)  # fmt: skip
    assert "bext.request.duration:1.500|ms" in one
    assert statsd.format_lines("bext", {}, -3) == ["bext.connections.open:0|g"]


@pytest.mark.parametrize("count", [1, 2, 3, 6, 7, 49, 99, 1000, 12345, 999_983, 10**9])
def test_sample_rate_stands_for_exactly_count_samples(count: int) -> None:
    rate = float(statsd.sample_rate(count))
    assert int(1 / rate) == count  # statsd_exporter, telegraf: int(1 / rate) copies
    assert round(1 / rate) == count  # etsy statsd: adds 1 / rate to the count
    assert len(statsd.sample_rate(count)) <= 20


def test_deltas_never_go_negative() -> None:
    before = {"requests": 10, "bytes_out": 500, "request.status.200": 10, "connections.open": 3}
    after = {"requests": 12, "bytes_out": 400, "request.status.200": 10, "connections.open": 1,
             "cache.hit": 4}  # fmt: skip
    # bytes_out went down (a reset block): not sent; a name the baseline lacks: no history.
    assert statsd.deltas(before, after) == {"requests": 2}


def test_batching_fills_datagrams_up_to_the_limit() -> None:
    lines = [f"bext.request.status.{code}:{code}|c" for code in range(100, 600)]
    datagrams = statsd.batch(lines)
    assert len(datagrams) > 1
    assert all(len(datagram) <= statsd.MAX_DATAGRAM for datagram in datagrams)
    assert all(len(d) > statsd.MAX_DATAGRAM - 40 for d in datagrams[:-1])  # well filled
    assert b"\n".join(datagrams).decode().split("\n") == lines  # nothing lost or split
    assert statsd.batch(["a:1|c", "b:2|c"], limit=11) == [b"a:1|c\nb:2|c"]
    assert statsd.batch(["a:1|c", "b:2|c"], limit=10) == [b"a:1|c", b"b:2|c"]
    assert statsd.batch(["x" * 50, "y:1|c"], limit=20) == [b"x" * 50, b"y:1|c"]
    assert statsd.batch([]) == []
