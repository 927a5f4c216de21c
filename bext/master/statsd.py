"""StatsD push from the master: what the shared counters gained since the last send.

With ``[metrics] statsd = "host:port"`` the master sends, every ``statsd_interval``, the
change of each counter of the shared segment as StatsD lines over one non-blocking UDP
socket (lines joined by newlines into datagrams of at most :data:`MAX_DATAGRAM` bytes).
The names are Gunicorn's (``--statsd-host``), with ``statsd_prefix`` in place of
``gunicorn``, so dashboards and ``statsd_exporter`` mappings written for Gunicorn work:

    <prefix>.requests:<n>|c                   responses sent
    <prefix>.request.status.<code>:<n>|c      by status code: the common codes one by one,
                                              the rest by class (``<prefix>.request.status.4xx``)
    <prefix>.request.duration:<ms>|ms|@<r>    see "Durations" below

and bext's own:

    <prefix>.bytes_in:<n>|c  <prefix>.bytes_out:<n>|c
    <prefix>.cache.hit|miss|stale:<n>|c  <prefix>.waf.blocked:<n>|c  <prefix>.rate_limited:<n>|c
    <prefix>.connections.open:<n>|g           connections open now (a gauge, sent every time)

Counters are sent only when they changed; a counter that went down (a block that was
reset) is never sent as a negative delta: counting resumes from its new value.

Durations: a StatsD timer wants one sample per request, and Gunicorn sends exactly that.
The segment holds a histogram (bucket counts and a sum), not samples, so each interval
sends *one* sample, the mean duration in milliseconds of the interval's requests (sum
delta / count delta), with the sample rate ``@1/count``: a StatsD server then counts it as
``count`` samples, so request counts and the mean (and sums) derived from the timer are
right, but the percentiles, minimum, maximum and standard deviation it computes are those
of per-interval means, not of requests. For real percentiles use the Prometheus histogram
(``/__bext/metrics``, ``bext_http_request_duration_seconds``).

The counters live in the segment the master keeps across reloads and hands on to the new
master of a binary upgrade, and only ever grow, so deltas need no correction on a reload.
The first send reports what happened since the master started (its totals then are the
starting point; never the whole history of a segment it inherited). On a binary upgrade
the old master sends what it has, stops sending, and passes its starting point to the new
master (``BEXT_STATSD_BASELINE``), so nothing is counted twice or lost; if the upgrade
fails the old master carries on from there. On a stop, the master sends a last time once
its workers have exited.

Sending never raises into the master loop: a failed ``sendto`` (nobody listening, a full
buffer) drops that datagram, as UDP would, and is logged at most once a minute. The host
is resolved when the configuration is loaded (start, reload) and, after a failure, at
most once a minute; an IP address avoids a DNS lookup in the master loop altogether.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping

from bext.config.schema import MetricsConfig
from bext.observe.errorlog import log
from bext.shm import metrics as m
from bext.shm.layout import Field, Segment

__all__ = [
    "BASELINE_ENV",
    "MAX_DATAGRAM",
    "StatsdSender",
    "batch",
    "deltas",
    "format_lines",
    "sample_rate",
    "snapshot",
]

MAX_DATAGRAM = 1400
"""Bytes per datagram at most (fits an Ethernet MTU with IP and UDP headers)."""
ERROR_LOG_EVERY = 60.0
"""Seconds between two log lines about failed sends (or lookups)."""
BASELINE_ENV = "BEXT_STATSD_BASELINE"
"""The old master's last sent totals (JSON), for the new master of a binary upgrade."""

DURATION_COUNT = "_duration.count"
DURATION_SUM_US = "_duration.sum_us"
OPEN_CONNECTIONS = "connections.open"

_SLOT_COUNTERS = (
    ("requests", Field.REQUESTS),
    ("bytes_in", Field.BYTES_IN),
    ("bytes_out", Field.BYTES_OUT),
    ("cache.hit", Field.CACHE_HIT),
    ("cache.miss", Field.CACHE_MISS),
    ("cache.stale", Field.CACHE_STALE),
    ("waf.blocked", Field.WAF_BLOCKED),
    ("rate_limited", Field.RATE_LIMITED),
)
_STATUS_NAMES = tuple(
    [f"request.status.{code}" for code in m.CODES]
    + [f"request.status.{klass}xx" for klass in range(1, 6)]
)
_OWN = ("bytes_in", "bytes_out", "cache.hit", "cache.miss", "cache.stale", "waf.blocked",
        "rate_limited")  # fmt: skip


def snapshot(segment: Segment, reader: m.MetricsReader | None = None) -> dict[str, int]:
    """Every counter StatsD is sent, as totals over all blocks (every key, zeros too)."""
    totals = (reader or m.MetricsReader(segment)).totals()
    counts = {name: segment.sum(field) for name, field in _SLOT_COUNTERS}
    counts.update(dict.fromkeys(_STATUS_NAMES, 0))
    for code, count in m.codes(totals):
        counts[f"request.status.{code}"] = count
    cumulative, seconds = m.histogram(totals, m.DURATION)
    counts[DURATION_COUNT] = cumulative[-1]
    counts[DURATION_SUM_US] = round(seconds * 1_000_000)
    counts[OPEN_CONNECTIONS] = max(sum(totals[m.OPEN + i] for i in range(len(m.VERSIONS))), 0)
    return counts


def deltas(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """What each counter gained; counters that did not grow (or went down) are left out."""
    gained: dict[str, int] = {}
    for name, value in after.items():
        if name == OPEN_CONNECTIONS:
            continue
        delta = value - before.get(name, value)  # a name the baseline lacks: no history
        if delta > 0:
            gained[name] = delta
    return gained


def sample_rate(count: int) -> str:
    """``1/count`` written so that ``1 / rate`` is at least ``count`` and less than
    ``count + 0.5`` (servers that replay a sampled timer ``int(1 / rate)`` times)."""
    exact = 1 / count
    for digits in (6, 9, 12, 15):
        for candidate in (exact, exact * (1 - 10.0 ** (1 - digits))):  # nearest, or just below
            text = f"{candidate:.{digits}g}"
            if count <= 1 / float(text) < count + 0.5:
                return text
    return repr(math.nextafter(exact, 0.0))


def format_lines(prefix: str, gained: Mapping[str, int], open_connections: int) -> list[str]:
    """The StatsD lines of one interval (``gained``: :func:`deltas`)."""
    lines: list[str] = []
    if gained.get("requests"):
        lines.append(f"{prefix}.requests:{gained['requests']}|c")
    for name in _STATUS_NAMES:
        if gained.get(name):
            lines.append(f"{prefix}.{name}:{gained[name]}|c")
    count = gained.get(DURATION_COUNT, 0)
    if count > 0:
        mean_ms = gained.get(DURATION_SUM_US, 0) / count / 1000
        rate = "" if count == 1 else f"|@{sample_rate(count)}"
        lines.append(f"{prefix}.request.duration:{mean_ms:.3f}|ms{rate}")
    for name in _OWN:
        if gained.get(name):
            lines.append(f"{prefix}.{name}:{gained[name]}|c")
    lines.append(f"{prefix}.{OPEN_CONNECTIONS}:{max(open_connections, 0)}|g")
    return lines


def batch(lines: Iterable[str], limit: int = MAX_DATAGRAM) -> list[bytes]:
    """Newline-joined datagrams of at most ``limit`` bytes (a longer line goes alone)."""
    datagrams: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode()
        if current and size + 1 + len(data) > limit:
            datagrams.append(b"\n".join(current))
            current, size = [], 0
        size += len(data) + (1 if current else 0)
        current.append(data)
    if current:
        datagrams.append(b"\n".join(current))
    return datagrams


def _inherited_baseline() -> dict[str, int] | None:
    text = os.environ.pop(BASELINE_ENV, "")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


class StatsdSender:
    """The master's StatsD client; :meth:`tick` is called on every turn of its loop."""

    def __init__(self, segment: Segment, clock: Callable[[], float] = time.monotonic) -> None:
        self.segment = segment
        self._reader = m.MetricsReader(segment)
        self._clock = clock
        now = clock()
        current = snapshot(segment, self._reader)
        inherited = _inherited_baseline()
        self._baseline: dict[str, int] | None = (
            {**current, **inherited} if inherited is not None else current
        )
        self._last_send = now
        self._due = math.inf
        self._target: tuple[str, int] | None = None
        self._address: tuple[object, ...] | None = None
        self._sock: socket.socket | None = None
        self._next_lookup = 0.0
        self._failures = 0
        self._next_report = 0.0

    # -- the master loop ---------------------------------------------------------------

    def tick(self, config: MetricsConfig, paused: bool = False) -> None:
        """Send if an interval has passed. ``paused``: a binary upgrade is under way (the
        new master sends). Never raises."""
        try:
            self._tick(config, paused)
        except Exception as exc:  # a bug must not take the master down
            self._due = self._clock() + config.statsd_interval  # nor spin its loop
            self._failed(f"{type(exc).__name__}: {exc}")

    def timeout(self, now: float) -> float:
        """Seconds until the next send is due (for the master's ``select``)."""
        return max(self._due - now, 0.0)

    def hand_over(self, config: MetricsConfig) -> dict[str, str]:
        """Before a binary upgrade: send what is pending, then return the environment that
        lets the new master start from here (the caller pauses this sender)."""
        try:
            if config.statsd is not None and self._baseline is not None:
                self._send(config, self._clock())
            if self._baseline is None:
                return {}
            self._due = math.inf
            return {BASELINE_ENV: json.dumps(self._baseline, separators=(",", ":"))}
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return {}

    def close(self, config: MetricsConfig, flush: bool = True) -> None:
        """The master is exiting: send a last time (unless ``flush`` is False: the new
        master of a binary upgrade sends from now on) and close the socket."""
        try:
            if flush and config.statsd is not None and self._baseline is not None:
                self._send(config, self._clock())
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
        self.close_inherited()

    def close_inherited(self) -> None:
        """Close this process's copy of the socket (a forked worker's, or at exit)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- internals ---------------------------------------------------------------------

    def _tick(self, config: MetricsConfig, paused: bool) -> None:
        now = self._clock()
        if config.statsd is None:
            if self._baseline is not None or self._sock is not None:
                self._baseline = None  # off: turned on again later, it starts afresh
                self._target = self._address = None
                self.close_inherited()
            self._due = math.inf
            return
        if paused:
            self._due = math.inf
            return
        if self._baseline is None:
            self._baseline = snapshot(self.segment, self._reader)
            self._last_send = now
        self._due = self._last_send + config.statsd_interval
        if now >= self._due:
            self._send(config, now)

    def _send(self, config: MetricsConfig, now: float) -> None:
        if not self._connect(config, now):
            self._last_send = now  # try again next interval; the deltas keep growing
            self._due = now + config.statsd_interval
            return
        assert self._sock is not None and self._address is not None and self._baseline is not None
        current = snapshot(self.segment, self._reader)
        lines = format_lines(config.statsd_prefix, deltas(self._baseline, current),
                             current[OPEN_CONNECTIONS])  # fmt: skip
        self._baseline = current
        self._last_send = now
        self._due = now + config.statsd_interval
        for datagram in batch(lines):
            try:
                self._sock.sendto(datagram, self._address)
            except OSError as exc:
                self._failed(f"cannot send to {_shown(config.statsd)}: {exc}")

    def _connect(self, config: MetricsConfig, now: float) -> bool:
        """The socket and resolved address for ``config.statsd``; False if unresolved."""
        target = config.statsd
        assert target is not None
        if target == self._target and self._sock is not None:
            return True
        if target != self._target:
            self._next_lookup = 0.0
            self._target = target
            self._address = None
            self.close_inherited()
        if now < self._next_lookup:
            return False
        try:
            family, _, _, _, address = socket.getaddrinfo(
                target[0], target[1], 0, socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._next_lookup = now + ERROR_LOG_EVERY
            self._failed(f"cannot resolve {_shown(target)}: {exc}")
            return False
        sock.setblocking(False)
        self._sock = sock
        self._address = tuple(address)
        log.info("statsd: sending to %s every %gs as %s.*", _shown(target),
                 config.statsd_interval, config.statsd_prefix)  # fmt: skip
        return True

    def _failed(self, reason: str) -> None:
        """Log at most once a minute, with how many failures that line stands for."""
        self._failures += 1
        now = self._clock()
        if now >= self._next_report:
            suppressed = self._failures - 1
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("statsd: %s%s", reason, more)
            self._failures = 0
            self._next_report = now + ERROR_LOG_EVERY


def _shown(target: tuple[str, int] | None) -> str:
    if target is None:
        return "-"
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
