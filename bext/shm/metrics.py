"""Labelled metrics in the shared segment: one block per worker slot block, one writer.

What the logging phase and the proxy count per response, with bounded label sets only
(a rule's index and an upstream's index from the configuration, a status class, one of a
fixed list of status codes, a fixed set of duration buckets), never paths or client data:

* responses by route rule and status class, and by status code (the common codes one by
  one, the rest per class);
* the request duration histogram (Prometheus's default buckets), overall;
* per upstream: the response time histogram (request sent to response head), errors by
  kind, retries, queue waits and their total time;
* connections accepted and open, by HTTP version; TLS handshakes;
* OTLP spans exported, failed and dropped (with ``otlp_endpoint`` set).

The block of a worker is its slot block's twin (same index: :func:`bext.shm.layout.
block_index`), so a reload's old and new workers never share one, and the master sums
them all for ``/__bext/metrics`` and StatsD. The one process that owns the block counts
into a private copy and publishes it within milliseconds (:mod:`bext.shm.tally`): no
lock, and no shared-memory write, on the hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from bext.shm.layout import BLOCKS, METRIC_FIELDS, METRICS_OFFSET, Segment
from bext.shm.tally import Tally

__all__ = [
    "CODES",
    "DURATION_BUCKETS",
    "ERROR_KINDS",
    "MAX_ROUTES",
    "MAX_UPSTREAMS",
    "SPAN_OUTCOMES",
    "VERSIONS",
    "MetricsReader",
    "WorkerMetrics",
]

MAX_ROUTES = 64
"""Route rules counted one by one; later rules share the last row. Row ``MAX_ROUTES`` is
for answers given before any rule matched (no match, admin endpoints, bad requests)."""
MAX_UPSTREAMS = 16
"""Upstream groups counted one by one (in config order); later ones share the last."""
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds in seconds (Prometheus client's default); +Inf is the last bucket."""
CODES = (100, 101, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403,
         404, 405, 408, 409, 410, 413, 414, 415, 422, 429, 431, 499, 500, 501, 502, 503,
         504)  # fmt: skip
"""Status codes counted one by one; any other is counted as its class (``4xx``)."""
ERROR_KINDS = ("connect", "timeout", "reset", "invalid")
VERSIONS = ("1.1", "2", "3")
SPAN_OUTCOMES = ("exported", "failed", "dropped")
"""What became of the spans recorded for OTLP export: a collector took them, their export
failed, or they never queued (``otlp_max_queue`` was full)."""

_CLASSES = 5
_BUCKETS = len(DURATION_BUCKETS) + 1
_HISTOGRAM = _BUCKETS + 1  # the buckets, then the sum in microseconds

# Offsets inside one block.
ROUTE_CLASS = 0  # first: WorkerMetrics.response leaves it out
CODE = ROUTE_CLASS + (MAX_ROUTES + 1) * _CLASSES
DURATION = CODE + len(CODES) + _CLASSES
DURATION_SUM = DURATION + _BUCKETS
UPSTREAM_TIME = DURATION + _HISTOGRAM
UPSTREAM_ERRORS = UPSTREAM_TIME + MAX_UPSTREAMS * _HISTOGRAM
UPSTREAM_RETRIES = UPSTREAM_ERRORS + MAX_UPSTREAMS * len(ERROR_KINDS)
QUEUE_WAITS = UPSTREAM_RETRIES + MAX_UPSTREAMS
QUEUE_WAIT_TIME = QUEUE_WAITS + MAX_UPSTREAMS
ACCEPTED = QUEUE_WAIT_TIME + MAX_UPSTREAMS
OPEN = ACCEPTED + len(VERSIONS)
TLS_HANDSHAKES = OPEN + len(VERSIONS)
SPANS = TLS_HANDSHAKES + 1
USED = SPANS + len(SPAN_OUTCOMES)
assert USED <= METRIC_FIELDS, USED

_CODE_INDEX = {code: CODE + index for index, code in enumerate(CODES)}


def _code_offset(status: int) -> int:
    offset = _CODE_INDEX.get(status)
    if offset is None:
        offset = CODE + len(CODES) + min(max(status // 100, 1), 5) - 1
    return offset


def _status_offsets(status: int) -> tuple[int, int]:
    """(status class index, code offset) of ``status``."""
    return min(max(status // 100, 1), 5) - 1, _code_offset(status)


_STATUS_OFFSETS = {status: _status_offsets(status) for status in range(100, 600)}
"""Per response, a status costs one lookup (anything outside 100-599 is worked out)."""


class WorkerMetrics:
    """The writer: one worker's block, counted into a :class:`~bext.shm.tally.Tally`.
    Every method is a few list item increments."""

    __slots__ = ("_tally", "_values")

    def __init__(self, segment: Segment, block: int) -> None:
        words = segment.words
        base = METRICS_OFFSET + block * METRIC_FIELDS
        for index in range(base + OPEN, base + OPEN + len(VERSIONS)):
            words[index] = 0  # gauges of a previous owner of the block
        self._tally = Tally(words, base, USED)
        self._values = self._tally.values

    def publish(self) -> None:
        self._tally.publish()

    def _changed(self) -> None:
        if not self._tally.armed:
            self._tally.changed()

    def response(self, route: int, status: int, duration: float) -> None:
        """One response: its rule (index, or -1 for none), status and duration."""
        values = self._values
        if not 0 <= route < MAX_ROUTES:
            route = MAX_ROUTES if route < 0 else MAX_ROUTES - 1
        klass, code = _STATUS_OFFSETS.get(status) or _status_offsets(status)
        values[route * _CLASSES + klass] += 1  # ROUTE_CLASS is 0
        values[code] += 1
        values[DURATION + bisect_left(DURATION_BUCKETS, duration)] += 1
        values[DURATION_SUM] += int(duration * 1_000_000)
        if not self._tally.armed:
            self._tally.changed()

    def upstream_time(self, upstream: int, seconds: float) -> None:
        """Time from sending the request to the response head, for upstream ``upstream``."""
        values = self._values
        base = (
            UPSTREAM_TIME
            + (upstream if upstream < MAX_UPSTREAMS else MAX_UPSTREAMS - 1) * _HISTOGRAM
        )
        values[base + bisect_left(DURATION_BUCKETS, seconds)] += 1
        values[base + _BUCKETS] += int(seconds * 1_000_000)
        if not self._tally.armed:  # per proxied response: _changed() spelled out
            self._tally.changed()

    def upstream_error(self, upstream: int, kind: str) -> None:
        index = ERROR_KINDS.index(kind) if kind in ERROR_KINDS else len(ERROR_KINDS) - 1
        self._values[UPSTREAM_ERRORS + min(upstream, MAX_UPSTREAMS - 1) * len(ERROR_KINDS)
                     + index] += 1  # fmt: skip
        self._changed()

    def retry(self, upstream: int) -> None:
        self._values[UPSTREAM_RETRIES + min(upstream, MAX_UPSTREAMS - 1)] += 1
        self._changed()

    def queue_wait(self, upstream: int, seconds: float) -> None:
        index = min(upstream, MAX_UPSTREAMS - 1)
        self._values[QUEUE_WAITS + index] += 1
        self._values[QUEUE_WAIT_TIME + index] += int(seconds * 1_000_000)
        self._changed()

    def connection_opened(self, version: int) -> None:
        """A connection of ``VERSIONS[version]`` accepted (and now open)."""
        self._values[ACCEPTED + version] += 1
        self._values[OPEN + version] += 1
        self._changed()

    def connection_closed(self, version: int) -> None:
        self._values[OPEN + version] -= 1
        self._changed()

    def connection_switched(self, old: int, new: int) -> None:
        """An open connection goes on under another version (h2c): still one accepted."""
        self._values[OPEN + old] -= 1
        self._values[OPEN + new] += 1
        self._changed()

    def tls_handshake(self) -> None:
        self._values[TLS_HANDSHAKES] += 1
        self._changed()

    def spans(self, outcome: int, count: int) -> None:
        """``count`` OTLP spans met ``SPAN_OUTCOMES[outcome]``."""
        self._values[SPANS + outcome] += count
        self._changed()


class NullMetrics(WorkerMetrics):
    """For code running outside a worker (tests, tools): counts nothing."""

    def __init__(self) -> None:
        pass

    def publish(self) -> None:
        pass

    def response(self, route: int, status: int, duration: float) -> None:
        pass

    def upstream_time(self, upstream: int, seconds: float) -> None:
        pass

    def upstream_error(self, upstream: int, kind: str) -> None:
        pass

    def retry(self, upstream: int) -> None:
        pass

    def queue_wait(self, upstream: int, seconds: float) -> None:
        pass

    def connection_opened(self, version: int) -> None:
        pass

    def connection_closed(self, version: int) -> None:
        pass

    def connection_switched(self, old: int, new: int) -> None:
        pass

    def tls_handshake(self) -> None:
        pass

    def spans(self, outcome: int, count: int) -> None:
        pass


class MetricsReader:
    """Sums of every block (what Prometheus and StatsD are given)."""

    def __init__(self, segment: Segment) -> None:
        self._words = segment.words

    def totals(self) -> list[int]:
        """Every field summed over all blocks (one pass over the region)."""
        words = self._words
        sums = [0] * USED
        for block in range(BLOCKS):
            base = METRICS_OFFSET + block * METRIC_FIELDS
            row = words[base : base + USED]
            if any(row):
                for index, value in enumerate(row):
                    sums[index] += value
        return sums


def route_class(totals: list[int]) -> Iterator[tuple[int, int, int]]:
    """``(route row, class 1-5, count)`` of the non-zero cells."""
    for route in range(MAX_ROUTES + 1):
        for klass in range(_CLASSES):
            value = totals[ROUTE_CLASS + route * _CLASSES + klass]
            if value:
                yield route, klass + 1, value


def codes(totals: list[int]) -> Iterator[tuple[str, int]]:
    """``(code or "4xx", count)`` of the non-zero cells."""
    for index, code in enumerate(CODES):
        if totals[CODE + index]:
            yield str(code), totals[CODE + index]
    for klass in range(_CLASSES):
        value = totals[CODE + len(CODES) + klass]
        if value:
            yield f"{klass + 1}xx", value


def histogram(totals: list[int], offset: int) -> tuple[list[int], float]:
    """Cumulative bucket counts (the last is the count) and the sum in seconds."""
    cumulative: list[int] = []
    running = 0
    for index in range(_BUCKETS):
        running += totals[offset + index]
        cumulative.append(running)
    return cumulative, totals[offset + _BUCKETS] / 1_000_000


def upstream_histogram_offset(upstream: int) -> int:
    return UPSTREAM_TIME + upstream * _HISTOGRAM
