"""``GET /__bext/status`` and ``GET /__bext/status.json``: a live page for operators.

``status.json`` is computed by whichever worker is asked, from the shared segment, the
same way ``/__bext/metrics`` is (it reuses :class:`~bext.observe.prometheus.MetricsExporter`'s
reader, rules and upstreams): the workers' slot blocks, the counters summed over every
block, the labelled metrics' histograms, the master's header counters, and the memory and
CPU of the master and its children (psutil of the asking worker's parent).

``status`` is one self-contained HTML page (``bext/templates/status/status.html``: inline
CSS and script, no CDN, works offline) that polls ``status.json`` every second and derives
the rates (requests/s, 5xx/s, CPU) from successive polls. Its strict
``Content-Security-Policy`` lets it run its own inline script and style and fetch from
its own origin, nothing else. Both answers are ``Cache-Control: no-store``; both sit behind
the admin gate (loopback peer or bearer token) like every ``/__bext/`` endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from bext import __version__
from bext.admin.endpoints import Endpoint
from bext.http.message import Request, Response
from bext.observe.prometheus import (
    _CACHE_OUTCOMES,
    _WAF_OUTCOMES,
    MetricsExporter,
    ProcessSample,
    sample_processes,
)
from bext.shm import metrics as m
from bext.shm.layout import BLOCKS, FIELDS, Field, Header, field_index

__all__ = ["StatusPage", "histogram_quantile", "status_data", "status_endpoints"]

CSP = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self' data:"
)
QUANTILES = (0.5, 0.95, 0.99)
_NO_STORE = (b"Cache-Control", b"no-store")


def histogram_quantile(
    q: float, cumulative: Sequence[int], bounds: Sequence[float] = m.DURATION_BUCKETS
) -> float | None:
    """The ``q``-quantile of a histogram, as Prometheus's ``histogram_quantile`` estimates
    it: linear interpolation inside the bucket the rank falls in (the first bucket starts
    at 0); a rank in the +Inf bucket gives the highest finite bound. ``cumulative`` holds
    the cumulative count of each bound, then +Inf's (the total). None when empty."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    below = 0
    lower = 0.0
    for upper, count in zip(bounds, cumulative, strict=False):
        if count >= rank and count > below:
            return lower + (upper - lower) * (rank - below) / (count - below)
        below = count
        lower = upper
    return float(bounds[-1])


def _summary(cumulative: list[int], total_seconds: float) -> dict[str, Any]:
    """Count, sum, mean and the :data:`QUANTILES` of one histogram (seconds)."""
    count = cumulative[-1]
    summary: dict[str, Any] = {
        "count": count,
        "sum": round(total_seconds, 6),
        "mean": round(total_seconds / count, 6) if count else None,
    }
    for q in QUANTILES:
        value = histogram_quantile(q, cumulative)
        summary[f"p{round(q * 100)}"] = None if value is None else round(value, 6)
    return summary


def _workers(exporter: MetricsExporter, live: dict[int, ProcessSample]) -> list[dict[str, Any]]:
    """The slot blocks that name a process: its slot, pid, generation and heartbeat age.

    A block keeps the pid of a worker that has exited until the slot's next worker of the
    same parity takes it; when the master's children are known, only theirs are listed."""
    words = exporter.segment.words
    now_ms = time.monotonic_ns() // 1_000_000
    workers = []
    for block in range(BLOCKS):
        base = field_index(block, 0)
        row = words[base : base + FIELDS]
        pid = row[Field.PID]
        if not pid or (live and pid not in live):
            continue
        beat = row[Field.HEARTBEAT_MS]
        process = live.get(pid)
        workers.append(
            {
                "slot": block // 2,
                "pid": pid,
                "generation": row[Field.GENERATION],
                "heartbeat_age": round(max(now_ms - beat, 0) / 1000, 3) if beat else None,
                "rss": process.rss if process else None,
                "cpu_seconds": process.cpu_seconds if process else None,
                "requests": row[Field.REQUESTS],
                "open_connections": row[Field.OPEN_CONNECTIONS],
            }
        )
    workers.sort(key=lambda worker: (worker["slot"], worker["generation"]))
    return workers


def status_data(exporter: MetricsExporter) -> dict[str, Any]:
    """Everything ``/__bext/status.json`` returns (see the module docstring)."""
    exporter.counters.publish()
    segment = exporter.segment
    words = segment.words
    totals = exporter.reader.totals()
    master, children = sample_processes()
    workers = _workers(exporter, children)

    statuses = {f"{klass}xx": segment.sum(Field.STATUS_1XX + klass - 1) for klass in range(1, 6)}
    connections = {
        "open": {v: totals[m.OPEN + i] for i, v in enumerate(m.VERSIONS)},
        "accepted": {v: totals[m.ACCEPTED + i] for i, v in enumerate(m.VERSIONS)},
        "refused": segment.sum(Field.CONNECTIONS_REFUSED),
    }
    cache_counts = {outcome: segment.sum(field) for outcome, field in _CACHE_OUTCOMES}
    # Answered from what was stored (fresh, stale, or after a 304) over every lookup that
    # found or missed (bypasses never looked, stores are not answers).
    served = cache_counts["hit"] + cache_counts["stale"] + cache_counts["revalidated"]
    looked_up = served + cache_counts["miss"]
    hit_ratio = round(served / looked_up, 4) if looked_up else None

    upstreams = []
    for index, group in enumerate(exporter.upstreams):
        entry: dict[str, Any] = {
            "name": group.name,
            "servers": [{"url": url, "up": up} for url, up in group.servers_up()],
        }
        if index < m.MAX_UPSTREAMS:  # later groups share the last row: not theirs alone
            cumulative, seconds = m.histogram(totals, m.upstream_histogram_offset(index))
            kinds = len(m.ERROR_KINDS)
            entry["response_time"] = _summary(cumulative, seconds)
            entry["errors"] = {
                kind: totals[m.UPSTREAM_ERRORS + index * kinds + offset]
                for offset, kind in enumerate(m.ERROR_KINDS)
            }
            entry["retries"] = totals[m.UPSTREAM_RETRIES + index]
        upstreams.append(entry)

    cumulative, seconds = m.histogram(totals, m.DURATION)
    processes_rss = [p.rss for p in (master, *children.values()) if p and p.rss is not None]
    return {
        "version": __version__,
        "time": round(time.time(), 3),
        "generation": max((w["generation"] for w in workers), default=None),
        "master": (
            {"pid": master.pid, "rss": master.rss, "cpu_seconds": master.cpu_seconds}
            if master is not None
            else None
        ),
        "workers": workers,
        "memory": {"total_rss": sum(processes_rss) if processes_rss else None},
        "totals": {
            "requests": segment.sum(Field.REQUESTS),
            "status": statuses,
            "bytes_in": segment.sum(Field.BYTES_IN),
            "bytes_out": segment.sum(Field.BYTES_OUT),
            "open_connections": segment.sum(Field.OPEN_CONNECTIONS),
            "upstream_errors": segment.sum(Field.UPSTREAM_ERRORS),
        },
        "connections": connections,
        "latency": _summary(cumulative, seconds),
        "cache": {**cache_counts, "hit_ratio": hit_ratio},
        "waf": {outcome: segment.sum(field) for outcome, field in _WAF_OUTCOMES},
        "rate_limited": segment.sum(Field.RATE_LIMITED),
        "upstreams": upstreams,
        "reloads": words[Header.RELOADS],
        "worker_restarts": words[Header.WORKER_RESTARTS],
    }


@cache
def _page() -> bytes:
    page = resources.files("bext") / "templates" / "status" / "status.html"
    return page.read_bytes()


class StatusPage:
    """The two endpoints over one :class:`MetricsExporter` (the pipeline's)."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter

    def json(self, request: Request) -> Response:
        body = json.dumps(status_data(self.exporter), separators=(",", ":")).encode()
        headers = [(b"Content-Type", b"application/json"), _NO_STORE]
        return Response(200, headers, body)

    def html(self, request: Request) -> Response:
        headers = [
            (b"Content-Type", b"text/html; charset=utf-8"),
            _NO_STORE,
            (b"Content-Security-Policy", CSP),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Referrer-Policy", b"no-referrer"),
        ]
        return Response(200, headers, _page())


def status_endpoints(exporter: MetricsExporter) -> dict[str, dict[str, Endpoint]]:
    """``status`` and ``status.json`` for :attr:`AdminEndpoints.endpoints`."""
    page = StatusPage(exporter)
    return {
        "status": {"GET": page.html, "HEAD": page.html},
        "status.json": {"GET": page.json, "HEAD": page.json},
    }
