"""OTLP span export through a real master: a real upstream, and a collector of the test's
own that decodes what bext POSTs with opentelemetry-proto's ExportTraceServiceRequest.

The span must describe the hop the upstream saw: its trace id is the one in the
``traceparent`` the upstream received, its span id that header's parent id, and its parent
the client's span when the client sent a ``traceparent``.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from bext.observe.otlp import GZIP_SLICE
from tests.support.origin import Answer, Origin
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class Collector:
    """An OTLP/HTTP traces receiver on an ephemeral loopback port: keeps every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with collector._lock:
                    collector.posts.append((self.path, headers, body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(collector.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list[Any]:
        with self._lock:
            posts = list(self.posts)
        return [
            ExportTraceServiceRequest.FromString(
                gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
            )
            for _, headers, body in posts
        ]

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span received, with its resource's attributes."""
        found = []
        for request in self.requests():
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def wait_for_trace(self, trace_id: str, timeout: float = 10.0) -> tuple[dict[str, Any], Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for resource, span in self.spans():
                if span.trace_id.hex() == trace_id:
                    return resource, span
            time.sleep(0.05)
        raise AssertionError(f"no span of trace {trace_id} in {len(self.posts)} exports")


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict (each value as whichever of its fields is set)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        result[pair.key] = getattr(pair.value, kind) if kind else None
    return result


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    server.route("/a", lambda request: Answer(200, [("Content-Type", "text/plain")], b"ok\n"))
    server.route("/boom", lambda request: Answer(500, [], b"broken\n"))
    yield server
    server.stop()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.stop()


def toml_value(value: str | int | dict[str, str]) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in value.items()) + " }"
    return str(value) if isinstance(value, int) else f'"{value}"'


def otlp_config(origin: Origin, **metrics: str | int | dict[str, str]) -> str:
    keys = "\n".join(f"{key} = {toml_value(value)}" for key, value in metrics.items())
    return config(
        f"""
[metrics]
{keys}

[log]
access = "off"

[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"

[[route_rules]]
pattern = "/fixed"
respond = {{ status = 200, body = "fixed" }}

[[route_rules]]
pattern = "/**"
proxy = "app"
""",
        workers=1,
    )


def upstream_traceparent(origin: Origin) -> tuple[str, str, str]:
    match = TRACEPARENT.fullmatch(origin.seen[-1].headers["traceparent"])
    assert match is not None
    return match.group(1), match.group(2), match.group(3)


def test_each_traced_request_is_one_server_span_of_the_hop_the_upstream_saw(
    start_bext: Start, origin: Origin, collector: Collector
) -> None:
    server = start_bext(
        otlp_config(
            origin, otlp_endpoint=collector.url, otlp_interval="1s", otlp_service_name="shop-edge"
        )
    )
    base = server.base_url
    before = time.time_ns()

    # Answered by bext itself (no trace), and a trace the client does not sample: no span.
    assert httpx.get(base + "/fixed").text == "fixed"
    unsampled = "11111111111111111111111111111111"
    httpx.get(base + "/a", headers={"traceparent": f"00-{unsampled}-aaaaaaaaaaaaaaaa-00"})
    assert upstream_traceparent(origin)[0] == unsampled

    # The client's trace, continued.
    client_trace, client_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    continued = httpx.get(
        base + "/a?x=1", headers={"traceparent": f"00-{client_trace}-{client_span}-01"}
    )
    assert continued.status_code == 200
    trace_a, parent_a, flags_a = upstream_traceparent(origin)
    assert (trace_a, flags_a) == (client_trace, "01") and parent_a != client_span

    # A trace bext starts; the upstream fails.
    failed = httpx.get(base + "/boom")
    assert failed.status_code == 500
    trace_b, parent_b, _ = upstream_traceparent(origin)

    # Over HTTP/2 (h2c with prior knowledge): the same logging phase records it.
    with httpx.Client(http1=False, http2=True) as h2:
        over_h2 = h2.get(base + "/a")
    assert over_h2.http_version == "HTTP/2"
    trace_c, parent_c, _ = upstream_traceparent(origin)
    after = time.time_ns()

    resource, span = collector.wait_for_trace(trace_a)
    assert resource["service.name"] == "shop-edge"
    assert span.span_id.hex() == parent_a  # bext's span is the parent the upstream got
    assert span.parent_span_id.hex() == client_span
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.name == "GET /**"
    assert attributes(span.attributes) == {
        "http.request.method": "GET",
        "url.path": "/a",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "http.route": "/**",
        "server.address": "127.0.0.1",
        "network.protocol.version": "1.1",
        "bext.request_id": continued.headers["x-request-id"],
        "bext.upstream": "app",
        "bext.upstream.server": f"http://127.0.0.1:{origin.port}",
    }
    assert span.status.code == Status.STATUS_CODE_UNSET
    # Wall-clock times: the loop's clock converted, within the test's own reading.
    assert before - 500_000_000 < span.start_time_unix_nano <= span.end_time_unix_nano
    assert span.end_time_unix_nano < after + 500_000_000

    _, span = collector.wait_for_trace(trace_b)
    assert span.span_id.hex() == parent_b
    assert span.parent_span_id == b""  # bext started this trace: a root span
    assert attributes(span.attributes)["http.response.status_code"] == 500
    assert attributes(span.attributes)["url.path"] == "/boom"
    assert span.status.code == Status.STATUS_CODE_ERROR

    _, span = collector.wait_for_trace(trace_c)
    assert span.span_id.hex() == parent_c
    assert attributes(span.attributes)["network.protocol.version"] == "2"

    # The requests bext answered itself or the client did not sample left no span (they
    # came before the last span, so they would have been exported no later than it).
    assert sorted(span.trace_id.hex() for _, span in collector.spans()) == sorted(
        [trace_a, trace_b, trace_c]
    )
    path, headers, _ = collector.posts[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"


def test_a_graceful_stop_exports_what_is_left(
    start_bext: Start, origin: Origin, collector: Collector
) -> None:
    server = start_bext(otlp_config(origin, otlp_endpoint=collector.url, otlp_interval="1h"))
    httpx.get(server.base_url + "/a")
    trace_id, span_id, _ = upstream_traceparent(origin)
    assert collector.posts == []  # an hour to the first export ...
    server.stop()  # ... but a stopping worker sends its spans
    assert server.proc is not None and server.proc.returncode == 0
    resource, span = collector.wait_for_trace(trace_id, timeout=1.0)
    assert span.span_id.hex() == span_id and resource["service.name"] == "bext"


def test_exports_carry_the_configured_headers_and_can_be_gzipped(
    start_bext: Start, origin: Origin, collector: Collector
) -> None:
    # What a hosted collector asks for: an API key in a header, and a compressed body.
    server = start_bext(
        otlp_config(
            origin,
            otlp_endpoint=collector.url,
            otlp_interval="1h",
            otlp_compression="gzip",
            otlp_headers={"Authorization": "Bearer s3cret", "x-tenant": "shop"},
        )
    )
    for _ in range(300):  # enough spans for more than one gzip slice of the body
        httpx.get(server.base_url + "/a")
    trace_id, span_id, _ = upstream_traceparent(origin)
    server.stop()  # the stopping worker exports at once
    _, span = collector.wait_for_trace(trace_id, timeout=2.0)
    assert span.span_id.hex() == span_id
    assert len(collector.spans()) == 300
    [(path, headers, body)] = collector.posts
    assert path == "/v1/traces"
    assert headers["authorization"] == "Bearer s3cret" and headers["x-tenant"] == "shop"
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"
    assert body[:2] == b"\x1f\x8b" and len(gzip.decompress(body)) > max(GZIP_SLICE, 2 * len(body))


def test_a_failing_collector_is_logged_and_the_requests_go_on(
    start_bext: Start, origin: Origin, collector: Collector
) -> None:
    collector.status = 503
    server = start_bext(otlp_config(origin, otlp_endpoint=collector.url, otlp_interval="1s"))
    assert httpx.get(server.base_url + "/a").status_code == 200
    server.wait_for_log(r"otlp: 1 spans not exported to \S+: the collector answered 503")
    collector.status = 200
    assert httpx.get(server.base_url + "/a").status_code == 200
    collector.wait_for_trace(upstream_traceparent(origin)[0])
    assert server.proc is not None and server.proc.poll() is None
    # What became of the spans, in /__bext/metrics (read by prometheus_client's parser).
    assert spans_total(server) == {"exported": 1.0, "failed": 1.0, "dropped": 0.0}


def test_spans_over_the_queue_are_dropped_and_counted(
    start_bext: Start, origin: Origin, collector: Collector
) -> None:
    """Five spans in a burst, two queue places: whatever way an export splits the burst,
    at least one span is dropped, and every span is either exported or counted dropped."""
    server = start_bext(
        otlp_config(origin, otlp_endpoint=collector.url, otlp_interval="2s", otlp_max_queue=2)
    )
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(5):
            assert client.get("/a").status_code == 200
    deadline = time.monotonic() + 10
    totals = spans_total(server)
    while totals["exported"] + totals["dropped"] < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        totals = spans_total(server)
    assert totals["exported"] + totals["dropped"] == 5
    assert totals["dropped"] >= 1 and totals["failed"] == 0
    assert len(collector.spans()) == totals["exported"]


def spans_total(server: BextProcess) -> dict[str, float]:
    """``bext_otlp_spans_total`` by outcome, as Prometheus would read it."""
    text = httpx.get(server.base_url + "/__bext/metrics").text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bext_otlp_spans_total"
    }
