"""``GET /__bext/metrics``: every counter of the shared segment in the Prometheus text
format (version 0.0.4), summed over all workers by whichever worker is asked.

Names follow Prometheus's conventions (``_total`` counters, base units, ``_seconds``
histograms). Labels come from the configuration only: a rule's index and pattern, an
upstream's name and server URL, a status code from a fixed list or its class, an HTTP
version; never a path, a host or anything else a client sends, so the series are bounded
by the config. Everything lives in the segment the master keeps across reloads and hands
to the next master on a binary upgrade, so counters only reset with a cold start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil

from bext.config import Config
from bext.http.message import Request, Response
from bext.proxy.balancer import UpstreamGroup
from bext.shm import metrics as m
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.layout import BLOCKS, Field, Header, Segment, field_index

__all__ = ["MetricsExporter", "ProcessSample", "sample_processes"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class _Text:
    """Lines of one exposition, a ``# HELP``/``# TYPE`` pair before each family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        shown = repr(value) if isinstance(value, float) else str(value)
        self.lines.append(f"{name}{_labels(**labels)} {shown}")

    def histogram(self, name: str, cumulative: Sequence[int], total: float, **labels: str) -> None:
        for bound, count in zip([*m.DURATION_BUCKETS, float("inf")], cumulative, strict=True):
            le = "+Inf" if bound == float("inf") else repr(bound)
            self.sample(f"{name}_bucket", count, **labels, le=le)
        self.sample(f"{name}_sum", total, **labels)
        self.sample(f"{name}_count", cumulative[-1], **labels)


class MetricsExporter:
    """What ``/__bext/metrics`` needs: the segment, the rules' and upstreams' names."""

    def __init__(
        self, segment: Segment, config: Config, upstreams: Iterable[UpstreamGroup]
    ) -> None:
        self.segment = segment
        self.reader = m.MetricsReader(segment)
        self.rules = [(str(rule.index), rule.pattern) for rule in config.route_rules]
        self.upstreams = list(upstreams)
        self.otlp = config.metrics.otlp_endpoint is not None
        """Span export is on: ``bext_otlp_spans_total`` is part of the output."""
        self.counters: SlotCounters = NullCounters()
        """The serving worker's own counts (``Pipeline.bind_counters``), published before
        a read; other workers' are at most ``bext.shm.tally.PUBLISH_DELAY`` old."""

    def __call__(self, request: Request) -> Response:
        headers = [(b"Content-Type", CONTENT_TYPE), (b"Cache-Control", b"no-store")]
        return Response(200, headers, self.render().encode())

    def _slots(self) -> dict[int, int]:
        """Worker pid -> slot, from the slot blocks (a pid label would churn on restarts)."""
        words = self.segment.words
        found: dict[int, int] = {}
        for block in range(BLOCKS):
            pid = words[field_index(block, Field.PID)]
            if pid:
                found[pid] = block // 2
        return found

    def _rule(self, row: int) -> tuple[str, str]:
        if row == m.MAX_ROUTES:
            return "none", ""
        if row < len(self.rules):
            return self.rules[row]
        return str(row), "(later rules)"

    def render(self) -> str:
        self.counters.publish()
        totals = self.reader.totals()
        words = self.segment.words
        text = _Text()

        text.family("bext_http_requests_total", "counter",
                    "Responses by route rule and status class.")  # fmt: skip
        for row, klass, count in m.route_class(totals):
            rule, pattern = self._rule(row)
            text.sample("bext_http_requests_total", count, rule=rule, pattern=pattern,
                        code_class=f"{klass}xx")  # fmt: skip
        text.family("bext_http_responses_total", "counter", "Responses by status code.")
        for code, count in m.codes(totals):
            text.sample("bext_http_responses_total", count, code=code)
        text.family("bext_http_request_duration_seconds", "histogram",
                    "Time from the request head to the last byte sent.")  # fmt: skip
        cumulative, total = m.histogram(totals, m.DURATION)
        text.histogram("bext_http_request_duration_seconds", cumulative, total)

        names = [group.name for group in self.upstreams]
        text.family("bext_upstream_response_seconds", "histogram",
                    "Time from sending a request upstream to its response head.")  # fmt: skip
        for index, name in enumerate(names[: m.MAX_UPSTREAMS]):
            cumulative, total = m.histogram(totals, m.upstream_histogram_offset(index))
            text.histogram("bext_upstream_response_seconds", cumulative, total, upstream=name)
        text.family("bext_upstream_errors_total", "counter", "Failed upstream attempts by kind.")
        for index, name in enumerate(names[: m.MAX_UPSTREAMS]):
            for offset, kind in enumerate(m.ERROR_KINDS):
                value = totals[m.UPSTREAM_ERRORS + index * len(m.ERROR_KINDS) + offset]
                text.sample("bext_upstream_errors_total", value, upstream=name, kind=kind)
        text.family("bext_upstream_retries_total", "counter",
                    "Requests sent again to another server or connection.")  # fmt: skip
        for index, name in enumerate(names[: m.MAX_UPSTREAMS]):
            text.sample("bext_upstream_retries_total", totals[m.UPSTREAM_RETRIES + index],
                        upstream=name)  # fmt: skip
        text.family("bext_upstream_queue_waits_total", "counter",
                    "Requests that waited in the max_conns queue.")  # fmt: skip
        text.family("bext_upstream_queue_wait_seconds_total", "counter",
                    "Time requests spent in the max_conns queue.")  # fmt: skip
        for index, name in enumerate(names[: m.MAX_UPSTREAMS]):
            text.sample("bext_upstream_queue_waits_total", totals[m.QUEUE_WAITS + index],
                        upstream=name)  # fmt: skip
            text.sample("bext_upstream_queue_wait_seconds_total",
                        totals[m.QUEUE_WAIT_TIME + index] / 1_000_000, upstream=name)  # fmt: skip
        text.family("bext_upstream_up", "gauge", "1 if the server takes requests now.")
        for group in self.upstreams:
            for url, up in group.servers_up():
                text.sample("bext_upstream_up", int(up), upstream=group.name, server=url)

        text.family("bext_connections_accepted_total", "counter", "Connections by HTTP version.")
        text.family("bext_connections_open", "gauge", "Open connections by HTTP version.")
        for index, version in enumerate(m.VERSIONS):
            text.sample("bext_connections_accepted_total", totals[m.ACCEPTED + index],
                        version=version)  # fmt: skip
            text.sample("bext_connections_open", totals[m.OPEN + index], version=version)

        text.family("bext_tls_handshakes_total", "counter", "TLS handshakes completed.")
        text.sample("bext_tls_handshakes_total", totals[m.TLS_HANDSHAKES])
        if self.otlp:
            text.family("bext_otlp_spans_total", "counter",
                        "Spans recorded for OTLP export, by what became of them.")  # fmt: skip
            for index, outcome in enumerate(m.SPAN_OUTCOMES):
                text.sample("bext_otlp_spans_total", totals[m.SPANS + index], outcome=outcome)
        for name, field, help_text in _SLOT_COUNTERS:
            text.family(name, "counter", help_text)
            text.sample(name, self.segment.sum(field))
        text.family("bext_cache_requests_total", "counter", "Cache outcomes.")
        for outcome, field in _CACHE_OUTCOMES:
            text.sample("bext_cache_requests_total", self.segment.sum(field), outcome=outcome)
        text.family("bext_waf_requests_total", "counter", "WAF outcomes.")
        for outcome, field in _WAF_OUTCOMES:
            text.sample("bext_waf_requests_total", self.segment.sum(field), outcome=outcome)
        text.family("bext_reloads_total", "counter", "Configurations that went live by reload.")
        text.sample("bext_reloads_total", words[Header.RELOADS])
        text.family("bext_worker_restarts_total", "counter",
                    "Workers respawned after an unplanned exit.")  # fmt: skip
        text.sample("bext_worker_restarts_total", words[Header.WORKER_RESTARTS])
        _processes(text, self._slots())
        return "\n".join(text.lines) + "\n"


_SLOT_COUNTERS = (
    ("bext_bytes_received_total", Field.BYTES_IN, "Bytes read from clients."),
    ("bext_bytes_sent_total", Field.BYTES_OUT, "Bytes of responses sent to clients."),
    ("bext_rate_limited_total", Field.RATE_LIMITED, "Requests answered 429 by a rate limit."),
    ("bext_connections_refused_total", Field.CONNECTIONS_REFUSED,
     "Connections closed at once by max_connections_per_ip."),
)  # fmt: skip
_CACHE_OUTCOMES = (
    ("hit", Field.CACHE_HIT),
    ("miss", Field.CACHE_MISS),
    ("stale", Field.CACHE_STALE),
    ("revalidated", Field.CACHE_REVALIDATED),
    ("bypass", Field.CACHE_BYPASS),
    ("stored", Field.CACHE_STORED),
)
_WAF_OUTCOMES = (
    ("inspected", Field.WAF_INSPECTED),
    ("blocked", Field.WAF_BLOCKED),
    ("detected", Field.WAF_DETECTED),
)


@dataclass
class ProcessSample:
    """One bext process's memory and CPU time (None where psutil could not read them)."""

    pid: int
    rss: int | None = None
    cpu_seconds: float | None = None


def sample_processes() -> tuple[ProcessSample | None, dict[int, ProcessSample]]:
    """The master (the asking worker's parent) and its children, by pid: what the metrics
    and the status page show, and which slot blocks name a live worker."""
    try:
        master = psutil.Process(os.getppid())
        children = master.children()
    except psutil.Error:
        return None, {}

    def sample(process: psutil.Process) -> ProcessSample:
        found = ProcessSample(process.pid)
        try:
            with process.oneshot():
                found.rss = process.memory_info().rss
                cpu = process.cpu_times()
                found.cpu_seconds = round(cpu.user + cpu.system, 3)
        except psutil.Error:
            pass
        return found

    return sample(master), {child.pid: sample(child) for child in children}


def _processes(text: _Text, slots: dict[int, int]) -> None:
    """Memory and CPU of the master and its workers."""
    text.family("bext_process_resident_memory_bytes", "gauge", "RSS of each bext process.")
    text.family("bext_process_cpu_seconds_total", "counter", "CPU time of each bext process.")
    master, children = sample_processes()
    found = [("master", master)] if master is not None else []
    found += [("worker", child) for child in children.values()]
    for role, process in found:
        if process is None or process.rss is None or process.cpu_seconds is None:
            continue
        slot = "" if role == "master" else str(slots.get(process.pid, "?"))
        labels = {"process": role, "slot": slot} if slot else {"process": role}
        text.sample("bext_process_resident_memory_bytes", process.rss, **labels)
        text.sample("bext_process_cpu_seconds_total", process.cpu_seconds, **labels)
