"""Span export over OTLP/HTTP: one SERVER span per traced, proxied request.

Off unless ``[metrics] otlp_endpoint`` is set (it needs the ``bext[otel]`` extra). Then
each worker has a :class:`SpanRecorder`, and the logging phase
(:meth:`bext.worker.context.WorkerContext.record`) hands it every response; with export
off the worker has none, and the logging phase pays one attribute check.

**Recording** is on the request path, so it does as little as possible: a request that
bext traced (a proxied one: ``notes.trace_id`` and ``notes.span_id`` set by
:mod:`bext.observe.tracing`) and whose trace is sampled becomes one plain tuple appended
to a list (:data:`SpanRecord`: ids, method, path, status, route pattern, upstream, the
event loop's start and end times). Nothing is converted or encoded there. The list holds
at most ``otlp_max_queue`` spans; beyond that new spans are dropped and counted.

**Export** runs in each worker's background task (:class:`SpanExporter`, started with the
worker's housekeeping): every ``otlp_interval`` seconds it takes the list, converts the
loop's clock to Unix nanoseconds (an offset measured once per export, so a stepped wall
clock is followed), encodes an OTLP ``ExportTraceServiceRequest``
(:mod:`bext.observe.otlp_encode`, a few hundred spans at a time with the loop running in
between), gzips it with ``otlp_compression = "gzip"`` (in slices, the loop running in
between as well), and POSTs it as ``application/x-protobuf`` with ``otlp_headers`` (a
collector's API key) with a small HTTP/1.1 client (one connection per export,
``Connection: close``, :data:`EXPORT_TIMEOUT`). A graceful stop exports what is left,
within :data:`STOP_TIMEOUT`.

Failures (a refused connection, a timeout, a non-2xx answer) drop that export's spans,
are counted, and are logged at most once a minute; nothing raises into the worker. Spans
are not retried: memory stays bounded by the queue, whatever the collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bext import __version__
from bext.config.schema import MetricsConfig
from bext.observe.errorlog import log
from bext.observe.otlp_encode import Encoder
from bext.shm.metrics import SPAN_OUTCOMES, NullMetrics, WorkerMetrics

if TYPE_CHECKING:
    from bext.http.message import Request

__all__ = [
    "EXPORT_TIMEOUT",
    "STOP_TIMEOUT",
    "Endpoint",
    "SpanExporter",
    "SpanRecord",
    "SpanRecorder",
    "post",
    "span_recorder",
    "start_exporter",
]

SpanRecord = tuple[
    str,  # trace id (32 hex digits)
    str,  # span id: bext's, the parent id the upstream was given (16 hex digits)
    str | None,  # parent span id: the client's, when bext continued its trace
    str,  # method
    str,  # path
    str,  # scheme
    str | None,  # host (the Host field or :authority)
    int,  # status
    str | None,  # route pattern
    str | None,  # upstream group
    str | None,  # upstream server
    str | None,  # request id
    str,  # HTTP version
    float,  # start (the event loop's clock)
    float,  # end (the same clock)
]
"""One recorded span, as :class:`SpanRecorder` keeps it until the next export."""

EXPORT_TIMEOUT = 10.0
"""Seconds one export may take: connect, send, read the status line."""
STOP_TIMEOUT = 1.0
"""Seconds a gracefully stopping worker gives its last export (the master allows
``graceful_timeout`` plus 2 s before it kills a worker)."""
ERROR_LOG_EVERY = 60.0
"""Seconds between two log lines about failed exports (or dropped spans)."""
ENCODE_CHUNK = 256
"""Spans encoded between two turns of the event loop."""
MAX_TEXT = 1024
"""Characters of a path or host kept in a span (both are bounded by the parser anyway)."""
MAX_RESPONSE_LINE = 8192
"""Bytes of one line of the collector's answer read at most."""
GZIP_LEVEL = 1
"""zlib's fastest level: the worker's loop waits while a slice is compressed, and span
ids and names compress well at any level."""
GZIP_SLICE = 64 * 1024
"""Bytes of an export body gzipped between two turns of the event loop."""

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n")


class SpanRecorder:
    """One worker's spans since the last export: at most ``limit``, the rest counted."""

    __slots__ = ("dropped", "limit", "recorded", "spans")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spans: list[SpanRecord] = []
        self.recorded = 0
        """Spans queued since the worker started."""
        self.dropped = 0
        """Spans not queued since the worker started: the queue was full."""

    def record(self, request: Request, status: int, now: float) -> None:
        """Queue ``request``'s span if bext traced it and the trace is sampled."""
        notes = request._notes  # not .notes: that makes notes for requests with none
        if notes is None or not notes.sampled:
            return
        trace_id = notes.trace_id
        span_id = notes.span_id
        if trace_id is None or span_id is None:
            return
        spans = self.spans
        if len(spans) >= self.limit:
            self.dropped += 1
            return
        host = request.host
        spans.append((trace_id, span_id, notes.parent_span_id, request.method,
                      request.path[:MAX_TEXT], request.scheme, host[:MAX_TEXT] if host else None,
                      status, getattr(request.route, "pattern", None), notes.upstream,
                      notes.server, notes.request_id, request.http_version, request.start_time,
                      now))  # fmt: skip
        self.recorded += 1

    def take(self) -> list[SpanRecord]:
        """The queued spans, leaving the queue empty."""
        spans = self.spans
        self.spans = []
        return spans


def span_recorder(config: MetricsConfig) -> SpanRecorder | None:
    """The worker's recorder, or None with export off (the logging phase then skips it)."""
    if config.otlp_endpoint is None:
        return None
    return SpanRecorder(config.otlp_max_queue)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to POST: an ``otlp_endpoint`` URL (checked by the config reader) taken apart."""

    url: str
    host: str
    port: int
    tls: bool
    authority: str
    """The ``Host`` field: the URL's host and port as written."""
    target: str
    """The request target: the path and query."""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        port = parts.port or (443 if tls else 80)
        return cls(url, host, port, tls, parts.netloc, target)


async def post(
    endpoint: Endpoint,
    body: bytes,
    timeout: float = EXPORT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    headers: Sequence[tuple[str, str]] = (),
    gzipped: bool = False,
) -> int:
    """POST ``body`` (protobuf; ``gzipped``: gzip-encoded) to ``endpoint`` with the extra
    ``headers`` (checked by the config reader); the final status code of the answer.

    One connection, closed after the status line has been read: an export is a few
    requests a minute, not worth a pool. Raises OSError, TimeoutError or ValueError (an
    answer that is not HTTP/1.x)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=(ssl_context or ssl.create_default_context()) if endpoint.tls else None,
            limit=MAX_RESPONSE_LINE,
        )
        try:
            head = (
                f"POST {endpoint.target} HTTP/1.1\r\n"
                f"Host: {endpoint.authority}\r\n"
                f"User-Agent: bext/{__version__}\r\n"
                "Content-Type: application/x-protobuf\r\n"
                + ("Content-Encoding: gzip\r\n" if gzipped else "")
                + "".join(f"{name}: {value}\r\n" for name, value in headers)
                + f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
            return await _final_status(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def _final_status(reader: asyncio.StreamReader) -> int:
    """The status of the first non-1xx answer (interim ones are skipped)."""
    for _ in range(4):
        line = await reader.readline()
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            shown = line[:60].decode("latin-1") if line else "nothing"
            raise ValueError(f"not an HTTP/1.x answer: {shown!r}")
        status = int(match.group(1))
        if status >= 200:
            return status
        for _ in range(100):  # an interim answer's fields, up to its blank line
            if (await reader.readline()).strip() == b"":
                break
    raise ValueError("too many interim answers")


async def _gzip(body: bytes) -> bytes:
    """``body`` gzip-encoded, :data:`GZIP_SLICE` bytes at a time with the loop running in
    between (an export of thousands of spans is a few hundred KiB)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip wrapper
    view = memoryview(body)
    parts = []
    for first in range(0, len(view), GZIP_SLICE):
        if first:
            await asyncio.sleep(0)
        parts.append(compressor.compress(view[first : first + GZIP_SLICE]))
    parts.append(compressor.flush())
    return b"".join(parts)


_EXPORTED, _FAILED, _DROPPED = (SPAN_OUTCOMES.index(o) for o in ("exported", "failed", "dropped"))


class SpanExporter:
    """A worker's export task: :meth:`start` in the running loop, :meth:`stop` to end."""

    def __init__(
        self,
        recorder: SpanRecorder,
        config: MetricsConfig,
        clock: Callable[[], float] = time.monotonic,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        assert config.otlp_endpoint is not None
        self.recorder = recorder
        self.metrics: WorkerMetrics = metrics if metrics is not None else NullMetrics()
        """The worker's labelled metrics: spans exported, failed and dropped
        (``bext_otlp_spans_total`` in ``/__bext/metrics``)."""
        self._drops_counted = 0
        self.endpoint = Endpoint.parse(config.otlp_endpoint)
        self.interval = config.otlp_interval
        self.timeout = EXPORT_TIMEOUT
        self._encoder = Encoder(config.otlp_service_name)
        self._headers = config.otlp_headers
        self._gzip = config.otlp_compression == "gzip"
        self._clock = clock
        self._ssl: ssl.SSLContext | None = None
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.exported = 0
        """Spans a collector accepted (2xx)."""
        self.lost = 0
        """Spans of exports that failed."""
        self.failures = 0
        """Exports that failed."""
        self._unreported = 0
        self._next_report = 0.0
        self._drops_reported = 0
        self._next_drop_report = 0.0

    def start(self) -> None:
        """Export every ``otlp_interval`` from now on, in a task of the running loop."""
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        log.debug("otlp: exporting spans to %s every %gs as %r", self.endpoint.url,
                  self.interval, self._encoder.service_name)  # fmt: skip

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Export what is queued and end, giving up after ``timeout`` seconds (0: end now,
        exporting nothing more). Never raises."""
        task = self._task
        if task is None or self._stopping is None:
            return
        self._stopping.set()
        if timeout > 0:
            await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        stopping = self._stopping
        assert stopping is not None
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
            await self.export()
        await self.export()  # what was recorded while the previous export was under way

    async def export(self) -> None:
        """Send the queued spans now. Never raises (but cancellation goes through)."""
        self._report_drops()
        records = self.recorder.take()
        if not records:
            return
        try:
            body = await self._encode(records)
            if self._gzip:
                body = await _gzip(body)
            if self.endpoint.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            status = await post(self.endpoint, body, self.timeout, self._ssl, self._headers,
                                self._gzip)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._failed(len(records), f"no answer within {self.timeout:g}s")
        except Exception as exc:  # refused, reset, a bad answer, a bug: never into the worker
            self._failed(len(records), f"{type(exc).__name__}: {exc}")
        else:
            if 200 <= status < 300:
                self.exported += len(records)
                self.metrics.spans(_EXPORTED, len(records))
            else:
                self._failed(len(records), f"the collector answered {status}")

    async def _encode(self, records: list[SpanRecord]) -> bytes:
        loop = asyncio.get_running_loop()
        # The loop's clock (monotonic) to Unix time, measured once for this export.
        offset_ns = time.time_ns() - round(loop.time() * 1e9)
        encoder = self._encoder
        encoder.start()
        for first in range(0, len(records), ENCODE_CHUNK):
            if first:
                await asyncio.sleep(0)  # let requests be served between two chunks
            encoder.add(records[first : first + ENCODE_CHUNK], offset_ns)
        return encoder.finish()

    def _failed(self, count: int, reason: str) -> None:
        """Count a failed export of ``count`` spans; log at most once a minute."""
        self.failures += 1
        self.lost += count
        self.metrics.spans(_FAILED, count)
        self._unreported += 1
        now = self._clock()
        if now >= self._next_report:
            more = self._unreported - 1
            since = f" ({more} more failed exports since the last report)" if more else ""
            log.warning("otlp: %d spans not exported to %s: %s%s", count, self.endpoint.url,
                        reason, since)  # fmt: skip
            self._unreported = 0
            self._next_report = now + ERROR_LOG_EVERY

    def _report_drops(self) -> None:
        dropped = self.recorder.dropped
        if dropped == self._drops_reported:
            return
        if dropped > self._drops_counted:
            self.metrics.spans(_DROPPED, dropped - self._drops_counted)
            self._drops_counted = dropped
        now = self._clock()
        if now >= self._next_drop_report:
            log.warning("otlp: %d spans dropped: more than otlp_max_queue = %d between two "
                        "exports", dropped - self._drops_reported,
                        self.recorder.limit)  # fmt: skip
            self._drops_reported = dropped
            self._next_drop_report = now + ERROR_LOG_EVERY


def start_exporter(
    recorder: SpanRecorder | None, config: MetricsConfig, metrics: WorkerMetrics | None = None
) -> SpanExporter | None:
    """Start exporting ``recorder``'s spans (None, and nothing started, with export off);
    what becomes of them is counted in ``metrics``."""
    if recorder is None or config.otlp_endpoint is None:
        return None
    exporter = SpanExporter(recorder, config, metrics=metrics)
    exporter.start()
    return exporter
