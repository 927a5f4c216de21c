"""A worker's own counter block: one writer per block, no locks; counted privately and
published to the segment within milliseconds (:mod:`bext.shm.tally`)."""

from __future__ import annotations

import time

from bext.shm.layout import Field, Segment, block_index, field_index
from bext.shm.metrics import NullMetrics, WorkerMetrics
from bext.shm.tally import Tally

_FIRST = int(Field.REQUESTS)
"""The slot block's counters run from here to ``WAF_DETECTED`` (the worker's own, in its
:class:`~bext.shm.tally.Tally`); the fields before them are written directly."""
_STOP = int(Field.WAF_DETECTED) + 1


class SlotCounters:
    """One worker's slot block: its totals, counted into a :class:`Tally` (indexes are
    plain ints computed once: this runs for every response)."""

    __slots__ = ("_beat", "_bytes_in", "_bytes_out", "_cache", "_open", "_rate_limited",
                 "_refused", "_requests", "_status", "_tally", "_upstream_errors", "_waf",
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
        self._tally = Tally(words, base + _FIRST, _STOP - _FIRST)
        self._beat = base + int(Field.HEARTBEAT_MS)
        self._requests = int(Field.REQUESTS) - _FIRST
        # status // 100 (1..5) -> index; anything else counts as 5xx
        self._status = [int(Field.STATUS_5XX) - _FIRST] * 10
        for klass in range(1, 6):
            self._status[klass] = int(Field.STATUS_1XX) + klass - 1 - _FIRST
        self._bytes_in = int(Field.BYTES_IN) - _FIRST
        self._bytes_out = int(Field.BYTES_OUT) - _FIRST
        self._open = int(Field.OPEN_CONNECTIONS) - _FIRST
        self._upstream_errors = int(Field.UPSTREAM_ERRORS) - _FIRST
        self._rate_limited = int(Field.RATE_LIMITED) - _FIRST
        self._refused = int(Field.CONNECTIONS_REFUSED) - _FIRST
        self._cache = {
            field.name[len("CACHE_") :].lower(): int(field) - _FIRST
            for field in Field
            if field.name.startswith("CACHE_")
        }
        self._waf = {
            field.name[len("WAF_") :].lower(): int(field) - _FIRST
            for field in Field
            if field.name.startswith("WAF_")
        }
        self.heartbeat()

    def heartbeat(self) -> None:
        self._words[self._beat] = time.monotonic_ns() // 1_000_000

    def publish(self) -> None:
        """Copy this worker's counts to the segment now (before reading it, at exit)."""
        self._tally.publish()
        self.metrics.publish()

    def response(self, status: int, sent: int, route: int = -1, duration: float = 0.0) -> None:
        """One response: its status, bytes sent, rule index (-1: none) and duration."""
        tally = self._tally
        values = tally.values
        values[self._requests] += 1
        values[self._status[status // 100 % 10]] += 1
        values[self._bytes_out] += sent
        if not tally.armed:
            tally.changed()
        self.metrics.response(route, status, duration)

    def received(self, size: int) -> None:
        """Request bytes (published with the response that follows)."""
        self._tally.values[self._bytes_in] += size

    def _count(self, index: int, delta: int = 1) -> None:
        tally = self._tally
        tally.values[index] += delta
        if not tally.armed:
            tally.changed()

    def connection_opened(self, version: int = 0) -> None:
        """A connection of HTTP version ``metrics.VERSIONS[version]`` was admitted."""
        self._count(self._open)
        self.metrics.connection_opened(version)

    def connection_closed(self, version: int = 0) -> None:
        self._count(self._open, -1)
        self.metrics.connection_closed(version)

    def upstream_error(self) -> None:
        self._count(self._upstream_errors)

    def rate_limited(self) -> None:
        """A request answered 429 by a ``[limits.NAME]`` rule."""
        self._count(self._rate_limited)

    def connection_refused(self) -> None:
        """A connection closed at once by ``max_connections_per_ip``."""
        self._count(self._refused)

    def cache(self, outcome: str) -> None:
        """One cache outcome: ``hit``, ``miss``, ``stale``, ``bypass``, ``stored`` or
        ``revalidated`` (the ``CACHE_*`` fields)."""
        self._count(self._cache[outcome])

    def waf(self, outcome: str) -> None:
        """One WAF outcome: ``inspected``, ``blocked`` or ``detected`` (``WAF_*`` fields)."""
        self._count(self._waf[outcome])


class NullCounters(SlotCounters):
    """For connections served outside a master (tests, tools): counts nothing."""

    def __init__(self) -> None:
        self.metrics = NullMetrics()

    def heartbeat(self) -> None:
        pass

    def publish(self) -> None:
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
