"""A worker's own counter block: plain integer stores, no locks (one writer per block)."""

from __future__ import annotations

import time

from bext.shm.layout import Field, Segment, block_index, field_index
from bext.shm.metrics import NullMetrics, WorkerMetrics


class SlotCounters:
    """Indexes are plain ints computed once: this runs for every response."""

    __slots__ = ("_beat", "_bytes_in", "_bytes_out", "_cache", "_open", "_rate_limited",
                 "_refused", "_requests", "_status", "_upstream_errors", "_waf",
                 "_words", "metrics")  # fmt: skip

    def __init__(self, segment: Segment, slot: int, generation: int, pid: int) -> None:
        words = self._words = segment.words
        block = block_index(slot, generation)
        base = field_index(block, 0)
        self.metrics = WorkerMetrics(segment, block)
        """The labelled metrics of the same block (route, code, histograms, upstreams)."""
        words[base + Field.PID] = pid
        words[base + Field.GENERATION] = generation
        words[base + Field.OPEN_CONNECTIONS] = 0
        self._beat = base + int(Field.HEARTBEAT_MS)
        self._requests = base + int(Field.REQUESTS)
        # status // 100 (1..5) -> index; anything else counts as 5xx
        self._status = [base + int(Field.STATUS_5XX)] * 10
        for klass in range(1, 6):
            self._status[klass] = base + int(Field.STATUS_1XX) + klass - 1
        self._bytes_in = base + int(Field.BYTES_IN)
        self._bytes_out = base + int(Field.BYTES_OUT)
        self._open = base + int(Field.OPEN_CONNECTIONS)
        self._upstream_errors = base + int(Field.UPSTREAM_ERRORS)
        self._rate_limited = base + int(Field.RATE_LIMITED)
        self._refused = base + int(Field.CONNECTIONS_REFUSED)
        self._cache = {
            field.name[len("CACHE_") :].lower(): base + int(field)
            for field in Field
            if field.name.startswith("CACHE_")
        }
        self._waf = {
            field.name[len("WAF_") :].lower(): base + int(field)
            for field in Field
            if field.name.startswith("WAF_")
        }
        self.heartbeat()

    def heartbeat(self) -> None:
        self._words[self._beat] = time.monotonic_ns() // 1_000_000

    def response(self, status: int, sent: int, route: int = -1, duration: float = 0.0) -> None:
        """One response: its status, bytes sent, rule index (-1: none) and duration."""
        words = self._words
        words[self._requests] += 1
        words[self._status[status // 100 % 10]] += 1
        words[self._bytes_out] += sent
        self.metrics.response(route, status, duration)

    def received(self, size: int) -> None:
        self._words[self._bytes_in] += size

    def connection_opened(self, version: int = 0) -> None:
        """A connection of HTTP version ``metrics.VERSIONS[version]`` was admitted."""
        self._words[self._open] += 1
        self.metrics.connection_opened(version)

    def connection_closed(self, version: int = 0) -> None:
        self._words[self._open] -= 1
        self.metrics.connection_closed(version)

    def upstream_error(self) -> None:
        self._words[self._upstream_errors] += 1

    def rate_limited(self) -> None:
        """A request answered 429 by a ``[limits.NAME]`` rule."""
        self._words[self._rate_limited] += 1

    def connection_refused(self) -> None:
        """A connection closed at once by ``max_connections_per_ip``."""
        self._words[self._refused] += 1

    def cache(self, outcome: str) -> None:
        """One cache outcome: ``hit``, ``miss``, ``stale``, ``bypass``, ``stored`` or
        ``revalidated`` (the ``CACHE_*`` fields)."""
        self._words[self._cache[outcome]] += 1

    def waf(self, outcome: str) -> None:
        """One WAF outcome: ``inspected``, ``blocked`` or ``detected`` (``WAF_*`` fields)."""
        self._words[self._waf[outcome]] += 1


class NullCounters(SlotCounters):
    """For connections served outside a master (tests, tools): counts nothing."""

    def __init__(self) -> None:
        self.metrics = NullMetrics()

    def heartbeat(self) -> None:
        pass

    def response(self, status: int, sent: int, route: int = -1, duration: float = 0.0) -> None:
        pass

    def received(self, size: int) -> None:
        pass

    def connection_opened(self, version: int = 0) -> None:
        pass

    def connection_closed(self, version: int = 0) -> None:
        pass

    def upstream_error(self) -> None:
        pass

    def rate_limited(self) -> None:
        pass

    def connection_refused(self) -> None:
        pass

    def cache(self, outcome: str) -> None:
        pass

    def waf(self, outcome: str) -> None:
        pass


def heartbeat_age(segment: Segment, slot: int, generation: int) -> float:
    """Seconds since the worker in that block last beat (the master's stuck-loop check)."""
    beat = segment.words[field_index(block_index(slot, generation), Field.HEARTBEAT_MS)]
    return time.monotonic() - beat / 1000 if beat else 0.0
