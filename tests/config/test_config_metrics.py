"""[metrics]: the StatsD push (address, prefix, interval) and server_timing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bext.config import Config
from bext.config.schema import MetricsConfig

Load = Callable[[str], Config]
Problems = Callable[[str], list[str]]


def test_defaults_leave_statsd_off(load: Load) -> None:
    assert load("").metrics == MetricsConfig()
    metrics = load("[metrics]\n").metrics
    assert metrics.statsd is None
    assert metrics.statsd_prefix == "bext"
    assert metrics.statsd_interval == 10.0
    assert metrics.server_timing is False


def test_values(load: Load) -> None:
    metrics = load(
        '[metrics]\nstatsd = "127.0.0.1:9125"\nstatsd_prefix = "web.bext-1"\n'
        'statsd_interval = "1m"\nserver_timing = true\n'
    ).metrics
    assert metrics == MetricsConfig(statsd=("127.0.0.1", 9125), statsd_prefix="web.bext-1",
                                    statsd_interval=60.0, server_timing=True)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("localhost:8125", ("localhost", 8125)),
        ("[::1]:9125", ("::1", 9125)),
        ("[2001:DB8::1]:9125", ("2001:db8::1", 9125)),
        ("StatsD.Example.com.:8125", ("statsd.example.com", 8125)),
        ("10.0.0.7:1", ("10.0.0.7", 1)),
    ],
)
def test_addresses(load: Load, text: str, address: tuple[str, int]) -> None:
    assert load(f'[metrics]\nstatsd = "{text}"\n').metrics.statsd == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", 'expected "host:port"'),
        (":9125", 'expected "host:port"'),
        ("", 'expected "host:port"'),
        ("127.0.0.1:0", "invalid port"),
        ("127.0.0.1:65536", "invalid port"),
        ("127.0.0.1:port", "invalid port"),
        ("::1:9125", "an IPv6 address goes in brackets"),
        ("[::zz]:9125", "not a valid IPv6 address"),
        ("300.1.1.1:9125", "not a valid host name or IP address"),
        ("stats d:9125", "not a valid host name or IP address"),
        ("under_score:9125", "not a valid host name or IP address"),
        ("udp://127.0.0.1:9125", "without a scheme"),
    ],
)
def test_bad_addresses(problems: Problems, text: str, reason: str) -> None:
    found = problems(f'[metrics]\nstatsd = "{text}"\n')
    assert len(found) == 1 and found[0].startswith("metrics.statsd: "), found
    assert reason in found[0]


def test_bad_address_type(problems: Problems) -> None:
    assert problems("[metrics]\nstatsd = 9125\n") == [
        "metrics.statsd: expected a string, got 9125 (an integer)"
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"500ms"', "must be at least 1s, got 500ms"),
        ("0", "must be at least 1s, got 0s"),
        ('"10"', "expected a duration"),
        ('"soon"', "expected a duration"),
        ("-5", "expected a duration"),
    ],
)
def test_bad_intervals(problems: Problems, value: str, reason: str) -> None:
    found = problems(f"[metrics]\nstatsd_interval = {value}\n")
    assert len(found) == 1 and found[0].startswith("metrics.statsd_interval: "), found
    assert reason in found[0]


@pytest.mark.parametrize("prefix", ["", "bext.", ".bext", "a..b", "bext app", "bext:x", "b|x"])
def test_bad_prefixes(problems: Problems, prefix: str) -> None:
    found = problems(f'[metrics]\nstatsd_prefix = "{prefix}"\n')
    assert len(found) == 1 and found[0].startswith("metrics.statsd_prefix: "), found


def test_unknown_key_and_bad_bool(problems: Problems) -> None:
    found = problems('[metrics]\nstatsd_host = "x"\nserver_timing = "yes"\n')
    assert any(p.startswith("metrics.server_timing: expected") for p in found), found
    assert any(p.startswith("metrics.statsd_host: unknown key") for p in found), found
