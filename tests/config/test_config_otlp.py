"""[metrics] otlp_*: the OTLP span export's endpoint, service name, interval, queue,
headers and compression."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from bext.config import Config
from bext.config.schema import MetricsConfig
from bext.observe import otlp_encode

Load = Callable[[str], Config]
Problems = Callable[[str], list[str]]


def test_off_by_default(load: Load) -> None:
    metrics = load("[metrics]\n").metrics
    assert metrics.otlp_endpoint is None
    assert metrics.otlp_service_name == "bext"
    assert metrics.otlp_interval == 5.0
    assert metrics.otlp_max_queue == 2048


def test_values(load: Load) -> None:
    metrics = load(
        '[metrics]\notlp_endpoint = "http://127.0.0.1:4318/v1/traces"\n'
        'otlp_service_name = "shop edge"\notlp_interval = "30s"\notlp_max_queue = 100\n'
    ).metrics
    assert metrics == MetricsConfig(
        otlp_endpoint="http://127.0.0.1:4318/v1/traces",
        otlp_service_name="shop edge",
        otlp_interval=30.0,
        otlp_max_queue=100,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4318/v1/traces",
        "https://otlp.example.com/v1/traces",
        "https://api.example.com:443/v1/traces?tenant=a",
        "http://[::1]:4318/v1/traces",
        "http://collector.:4318/",
    ],
)
def test_good_endpoints(load: Load, url: str) -> None:
    assert load(f'[metrics]\notlp_endpoint = "{url}"\n').metrics.otlp_endpoint == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("127.0.0.1:4318/v1/traces", "http:// or https://"),
        ("grpc://127.0.0.1:4317/v1/traces", "http:// or https://"),
        ("http://127.0.0.1:4318", 'needs a path such as "/v1/traces"'),
        ("http://127.0.0.1:0/v1/traces", "invalid port"),
        ("http://127.0.0.1:65536/v1/traces", "invalid port"),
        ("http://127.0.0.1:otlp/v1/traces", "invalid port"),
        ("http://127.0.0.1:/v1/traces", "invalid port"),
        ("http://::1:4318/v1/traces", "an IPv6 address goes in brackets"),
        ("http://[::zz]:4318/v1/traces", "not a valid IPv6 address"),
        ("http://[::1:4318/v1/traces", "not a valid IPv6 address"),
        ("http://300.1.1.1:4318/v1/traces", "not a valid host name or IP address"),
        ("http://under_score:4318/v1/traces", "not a valid host name or IP address"),
        ("http:///v1/traces", "expected an OTLP/HTTP URL"),
        ("http://user:secret@127.0.0.1:4318/v1/traces", "user name or password"),
        ("http://127.0.0.1:4318/v1/traces#top", "#fragment"),
        ("http://127.0.0.1:4318/v1 traces", "without spaces"),
        ("", "http:// or https://"),
    ],
)
def test_bad_endpoints(problems: Problems, url: str, reason: str) -> None:
    found = problems(f'[metrics]\notlp_endpoint = "{url}"\n')
    assert len(found) == 1 and found[0].startswith("metrics.otlp_endpoint: "), found
    assert reason in found[0], found


def test_endpoint_type(problems: Problems) -> None:
    assert problems("[metrics]\notlp_endpoint = 4318\n") == [
        "metrics.otlp_endpoint: expected a string, got 4318 (an integer)"
    ]


@pytest.mark.parametrize("name", ["", " bext", "bext ", "b\\text", "é", "x" * 256])
def test_bad_service_names(problems: Problems, name: str) -> None:
    found = problems(f'[metrics]\notlp_service_name = "{name}"\n')
    assert len(found) == 1 and found[0].startswith("metrics.otlp_service_name: "), found
    assert "printable ASCII" in found[0]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"500ms"', "must be from 1s to 1h, got 500ms"),
        ('"2h"', "must be from 1s to 1h, got 2h"),
        ("0", "must be from 1s to 1h, got 0s"),
        ('"soon"', "expected a duration"),
    ],
)
def test_bad_intervals(problems: Problems, value: str, reason: str) -> None:
    found = problems(f"[metrics]\notlp_interval = {value}\n")
    assert len(found) == 1 and found[0].startswith("metrics.otlp_interval: "), found
    assert reason in found[0], found


@pytest.mark.parametrize("value", ["0", "-1", "1048577", '"many"', "1.5"])
def test_bad_queue_sizes(problems: Problems, value: str) -> None:
    found = problems(f"[metrics]\notlp_max_queue = {value}\n")
    assert len(found) == 1 and found[0].startswith("metrics.otlp_max_queue: "), found


def test_a_missing_extra_is_refused_with_how_to_install_it(
    problems: Problems, load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if opentelemetry-proto were not installed: its import fails.
    monkeypatch.setitem(
        sys.modules, "opentelemetry.proto.collector.trace.v1.trace_service_pb2", None
    )
    assert otlp_encode.available() is False
    found = problems('[metrics]\notlp_endpoint = "http://127.0.0.1:4318/v1/traces"\n')
    assert len(found) == 1 and found[0].startswith("metrics.otlp_endpoint: "), found
    assert "pip install 'bext[otel]'" in found[0] and "opentelemetry-proto" in found[0]
    # Off, the extra is not needed.
    assert load('[metrics]\notlp_service_name = "x"\n').metrics.otlp_endpoint is None


def test_the_extra_check_is_the_one_the_reader_asks(
    problems: Problems, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_encode, "available", lambda: False)
    found = problems('[metrics]\notlp_endpoint = "http://127.0.0.1:4318/v1/traces"\n')
    assert len(found) == 1 and "pip install 'bext[otel]'" in found[0], found


def test_the_extra_is_installed_for_the_tests() -> None:
    assert otlp_encode.available() is True


def test_unknown_otlp_key(problems: Problems) -> None:
    found = problems('[metrics]\notlp_protocol = "grpc"\n')
    assert found == [found[0]] and found[0].startswith("metrics.otlp_protocol: unknown key")


def test_headers_and_compression(load: Load) -> None:
    metrics = load(
        '[metrics]\notlp_compression = "gzip"\n'
        'otlp_headers = { Authorization = "Bearer s3cret", "x-scope-orgid" = "shop" }\n'
    ).metrics
    assert metrics.otlp_compression == "gzip"
    assert metrics.otlp_headers == (("authorization", "Bearer s3cret"), ("x-scope-orgid", "shop"))
    assert "s3cret" not in repr(metrics)  # an API key never reaches a log line
    assert load("[metrics]\n").metrics.otlp_headers == ()
    assert load("[metrics]\n").metrics.otlp_compression == "none"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ('"Bearer x"', "expected a table such as { authorization"),
        ('{ Host = "x" }', '"host" is set by bext on export requests'),
        ('{ "content-type" = "x" }', '"content-type" is set by bext on export requests'),
        ('{ "Content-Encoding" = "br" }', '"content-encoding" is set by bext'),
        ('{ "content-length" = "1" }', '"content-length" is set by bext'),
        ('{ "transfer-encoding" = "chunked" }', '"transfer-encoding" is set by bext'),
        ('{ "bad name" = "x" }', "is not a valid HTTP header name"),
        ('{ "x-key" = "s3cret\\r\\nHost: evil" }', "must not contain CR, LF or NUL"),
        ('{ "x-key" = "s3cret\u00e9" }', "must be printable ASCII"),
        ('{ "User-Agent" = "x" }', '"user-agent" is set by bext'),
        ('{ "x-key" = 42 }', "expected a string, got 42"),
        ('{ "X-Key" = "a", "x-key" = "b" }', '"x-key" is set twice'),
    ],
)
def test_bad_headers_are_refused(problems: Problems, headers: str, reason: str) -> None:
    found = problems(f"[metrics]\notlp_headers = {headers}\n")
    assert len(found) == 1 and found[0].startswith("metrics.otlp_headers"), found
    assert reason in found[0], found
    assert "s3cret" not in found[0]  # an API key is never repeated in a message


def test_bad_compression_is_refused(problems: Problems) -> None:
    found = problems('[metrics]\notlp_compression = "gz"\n')
    assert found == [found[0]] and found[0].startswith("metrics.otlp_compression: expected one")
    assert '"gzip"' in found[0]
