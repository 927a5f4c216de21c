"""The OTLP span recorder in the logging phase, the encoder and the exporter's client.

With export off the worker's context has no recorder and the logging phase records
nothing; on, a traced and sampled request is one tuple; the exporter turns tuples into an
ExportTraceServiceRequest and survives every way a collector can fail.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bext.config import Config
from bext.config.load import parse_config
from bext.config.schema import MetricsConfig
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.observe import otlp
from bext.observe.accesslog import AccessLog
from bext.observe.otlp import GZIP_SLICE, Endpoint, SpanExporter, SpanRecord, SpanRecorder, post
from bext.observe.otlp_encode import Encoder, server_address
from bext.observe.tracing import identity_lines
from bext.proxy.headers import TrustedProxies
from bext.worker.main import build_context

ENDPOINT = "http://127.0.0.1:4318/v1/traces"
CLIENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Handler:
    def handle(self, request: Request) -> Response:
        return Response(200)


def load(metrics: str = "") -> Config:
    return parse_config(tomllib.loads(f"[metrics]\n{metrics}\n"), base_dir=Path("/srv"))


def traced(traceparent: str | None = CLIENT, start: float = 10.0) -> Request:
    """A request the proxy has sent upstream: ids and trace noted as the proxy notes them."""
    request = Request("GET", b"/p?q=1", [], "1.1", "http", "127.0.0.1", 1, 80, EMPTY_BODY, start,
                      "shop.example:8443")  # fmt: skip
    request.path = "/p"
    given = traceparent.encode() if traceparent is not None else None
    identity_lines(request, TrustedProxies([]), None, given, None)
    request.notes.upstream = "app"
    request.notes.server = "http://127.0.0.1:8000"
    return request


@pytest.fixture
def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every call of SpanRecorder.record, whoever's recorder it is (then recording)."""
    calls: list[Request] = []
    real = SpanRecorder.record

    def spy(self: SpanRecorder, request: Request, status: int, now: float) -> None:
        calls.append(request)
        real(self, request, status, now)

    monkeypatch.setattr(SpanRecorder, "record", spy)
    return calls


# -- the logging phase --------------------------------------------------------------------


def test_with_otlp_off_the_logging_phase_records_nothing(record_calls: list[Request]) -> None:
    ctx = build_context(load(), Handler(), AccessLog("off"))
    assert ctx.otlp is None
    assert ctx.for_listener("https").otlp is None
    ctx.record(traced(), 200, 0, 10.5)
    assert record_calls == []


def test_with_otlp_on_one_span_per_traced_sampled_request(record_calls: list[Request]) -> None:
    ctx = build_context(load(f'otlp_endpoint = "{ENDPOINT}"'), Handler(), AccessLog("off"))
    recorder = ctx.otlp
    assert isinstance(recorder, SpanRecorder)
    assert ctx.for_listener("https").otlp is recorder  # every listener, one queue
    request = traced()
    ctx.record(request, 200, 0, 10.25)
    notes = request.notes
    assert recorder.spans == [
        (
            notes.trace_id,
            notes.span_id,
            "b7ad6b7169203331",
            "GET",
            "/p",
            "http",
            "shop.example:8443",
            200,
            None,
            "app",
            "http://127.0.0.1:8000",
            notes.request_id,
            "1.1",
            10.0,
            10.25,
        )
    ]
    assert notes.trace_id == "0af7651916cd43dd8448eb211c80319c"
    # Not traced (answered by bext itself), or not sampled: called, nothing kept.
    ctx.record(Request("GET", b"/", [], "1.1", "http", "127.0.0.1", 1, 80, EMPTY_BODY, 0.0),
               200, 0, 1.0)  # fmt: skip
    ctx.record(traced(CLIENT[:-2] + "00"), 200, 0, 1.0)
    assert len(record_calls) == 3 and len(recorder.spans) == 1
    assert recorder.take() and recorder.spans == []


def test_a_full_queue_drops_and_counts() -> None:
    recorder = SpanRecorder(2)
    for _ in range(5):
        recorder.record(traced(None), 200, 11.0)
    assert len(recorder.spans) == 2 and recorder.dropped == 3 and recorder.recorded == 2


# -- encoding -----------------------------------------------------------------------------


def record(**changes: Any) -> SpanRecord:
    fields: dict[str, Any] = {
        "trace": "0af7651916cd43dd8448eb211c80319c", "span": "00f067aa0ba902b7",
        "parent": None, "method": "GET", "path": "/p", "scheme": "https",
        "host": "[::1]:3443", "status": 200, "route": "/p/*", "upstream": "app",
        "server": "http://127.0.0.1:8000", "rid": "abc", "version": "2.0", "start": 100.5,
        "end": 100.75,
    }  # fmt: skip
    fields.update(changes)
    return tuple(fields.values())  # type: ignore[return-value]


def decode(data: bytes) -> Any:
    return ExportTraceServiceRequest.FromString(data)


def test_encoding_converts_the_loop_clock_and_names_the_span() -> None:
    encoder = Encoder("edge")
    encoder.start()
    encoder.add([record(), record(method="BREW", route=None, parent="b7ad6b7169203331")],
                1_700_000_000_000_000_000)  # fmt: skip
    message = decode(encoder.finish())
    resource = {a.key: a.value.string_value for a in message.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "edge"
    first, second = message.resource_spans[0].scope_spans[0].spans
    assert first.name == "GET /p/*" and first.parent_span_id == b""
    assert first.start_time_unix_nano == 1_700_000_100_500_000_000
    assert first.end_time_unix_nano == 1_700_000_100_750_000_000
    assert first.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert first.span_id == bytes.fromhex("00f067aa0ba902b7")
    values = {a.key: a.value for a in first.attributes}
    assert values["server.address"].string_value == "::1"
    assert values["http.response.status_code"].int_value == 200
    assert values["network.protocol.version"].string_value == "2"  # HTTP/2 is "2.0" in bext
    assert second.name == "_OTHER" and second.parent_span_id.hex() == "b7ad6b7169203331"
    methods = {a.key: a.value.string_value for a in second.attributes}
    assert methods["http.request.method"] == "_OTHER"
    assert methods["http.request.method_original"] == "BREW"
    encoder.start()  # the encoder starts afresh for the next export
    assert len(decode(encoder.finish()).resource_spans[0].scope_spans[0].spans) == 0


@pytest.mark.parametrize(
    ("host", "address"),
    [("example.com", "example.com"), ("example.com:8443", "example.com"), ("[::1]:3000", "::1"),
     ("[::1]", "::1"), ("10.0.0.1:80", "10.0.0.1")],
)  # fmt: skip
def test_server_address(host: str, address: str) -> None:
    assert server_address(host) == address


def test_endpoint_parts() -> None:
    plain = Endpoint.parse("http://127.0.0.1:4318/v1/traces?tenant=a")
    assert (plain.host, plain.port, plain.tls) == ("127.0.0.1", 4318, False)
    assert (plain.authority, plain.target) == ("127.0.0.1:4318", "/v1/traces?tenant=a")
    secure = Endpoint.parse("https://[::1]/v1/traces")
    assert (secure.host, secure.port, secure.tls, secure.authority) == ("::1", 443, True, "[::1]")


# -- the exporter against a collector of the test's own ----------------------------------


Answerer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(*answers: bytes, bodies: list[bytes] | None = None) -> Answerer:
    """A collector that reads one request and writes ``answers``, keeping the body."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        if bodies is not None:
            bodies.append(head + body)
        for answer in answers:
            writer.write(answer)
        await writer.drain()
        writer.close()

    return serve


async def with_collector(serve: Answerer, test: Callable[[str], Awaitable[None]]) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await test(f"http://127.0.0.1:{port}/v1/traces")
    finally:
        server.close()


def exporter(url: str, spans: int = 3, interval: float = 5.0) -> SpanExporter:
    config = MetricsConfig(otlp_endpoint=url, otlp_service_name="svc", otlp_interval=interval)
    recorder = SpanRecorder(100)
    for _ in range(spans):
        recorder.record(traced(), 200, 10.5)
    return SpanExporter(recorder, config)


def test_export_posts_protobuf_and_counts_what_was_accepted() -> None:
    bodies: list[bytes] = []

    async def test(url: str) -> None:
        sender = exporter(url)
        await sender.export()
        assert (sender.exported, sender.failures, sender.recorder.spans) == (3, 0, [])
        await sender.export()  # nothing queued: nothing sent
        assert len(bodies) == 1

    serve = answering(b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\n"
                      b"Content-Length: 0\r\n\r\n", bodies=bodies)  # fmt: skip
    asyncio.run(with_collector(serve, test))
    head, _, body = bodies[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Type: application/x-protobuf\r\n" in head
    spans = decode(body).resource_spans[0].scope_spans[0].spans
    assert len(spans) == 3 and spans[0].name == "GET"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "answered 503"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP/1.x answer"),
        (b"", "not an HTTP/1.x answer: 'nothing'"),
    ],
)
def test_a_failed_export_is_counted_and_logged_once_a_minute(
    answer: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(url: str) -> None:
        sender = exporter(url)
        await sender.export()
        for _ in range(3):
            sender.recorder.record(traced(), 200, 10.5)
        await sender.export()
        assert (sender.failures, sender.lost, sender.exported) == (2, 6, 0)

    with caplog.at_level(logging.WARNING, logger="bext"):
        asyncio.run(with_collector(answering(answer), test))
    lines = [r.getMessage() for r in caplog.records if "otlp:" in r.getMessage()]
    assert len(lines) == 1 and "3 spans not exported" in lines[0] and reason in lines[0], lines


def test_an_unreachable_or_silent_collector_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def test(url: str) -> None:
        refused = exporter(f"http://127.0.0.1:{closed}/v1/traces")
        await refused.export()
        assert (refused.failures, refused.lost) == (1, 3)
        hanging = exporter(url)
        hanging.timeout = 0.2
        await hanging.export()
        assert (hanging.failures, hanging.lost) == (1, 3)

    with caplog.at_level(logging.WARNING, logger="bext"):
        asyncio.run(with_collector(silent, test))
    text = caplog.text
    assert "ConnectionRefusedError" in text or "Connect call failed" in text, text
    assert "no answer within 0.2s" in text


def test_stop_sends_what_is_queued_and_gives_up_in_time() -> None:
    bodies: list[bytes] = []

    async def test(url: str) -> None:
        sender = exporter(url, spans=2, interval=3600.0)
        sender.start()
        await asyncio.sleep(0.05)
        assert bodies == []  # an hour to the first export
        await sender.stop(2.0)
        assert sender.exported == 2 and len(bodies) == 1
        await sender.stop(2.0)  # twice is harmless

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    asyncio.run(with_collector(answering(ok, bodies=bodies), test))

    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def test_timeout(url: str) -> None:
        sender = exporter(url, interval=3600.0)
        sender.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sender.stop(0.3)
        assert loop.time() - started < 1.0 and sender.exported == 0

    asyncio.run(with_collector(hangs, test_timeout))


def test_post_returns_the_final_status() -> None:
    async def test(url: str) -> None:
        assert await post(Endpoint.parse(url), b"x", 2.0) == 202

    accepted = b"HTTP/1.0 202 Accepted\r\n\r\n"
    asyncio.run(with_collector(answering(accepted), test))


def test_the_module_starts_nothing_with_otlp_off() -> None:
    assert otlp.span_recorder(MetricsConfig()) is None
    assert otlp.start_exporter(None, MetricsConfig()) is None
    assert otlp.start_exporter(SpanRecorder(1), MetricsConfig()) is None


def test_gzip_yields_to_the_loop_between_slices() -> None:
    body = bytes(range(256)) * (3 * GZIP_SLICE // 256 + 1)  # four slices

    async def main() -> tuple[bytes, int]:
        turns = 0
        done = False

        async def count_turns() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.ensure_future(count_turns())
        await asyncio.sleep(0)
        before = turns
        compressed = await otlp._gzip(body)
        done = True
        await counter
        return compressed, turns - before

    compressed, turns = asyncio.run(main())
    assert gzip.decompress(compressed) == body
    assert turns >= 3  # the loop ran between the four slices
