"""The keys of the edge queue and of the probe's Host: defaults, values, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bext.config import Config, ConfigError, parse_config
from bext.master.health import probe_host

BASE = """
[upstreams.app]
{upstream}
[[upstreams.app.servers]]
url = "http://127.0.0.1:8000"
{server}
[upstreams.app.health]
enabled = true
{health}
[[route_rules]]
pattern = "/**"
proxy = "app"
{rule}
"""


def load(upstream: str = "", server: str = "", health: str = "", rule: str = "") -> Config:
    text = BASE.format(upstream=upstream, server=server, health=health, rule=rule)
    return parse_config(tomllib.loads(text), base_dir=Path.cwd())


def test_defaults() -> None:
    config = load()
    upstream = config.upstreams[0]
    assert upstream.queue == 1000 and upstream.queue_timeout == 30.0
    assert upstream.servers[0].max_conns == 0
    assert upstream.health.host is None and probe_host(config, upstream) == "localhost"


def test_values() -> None:
    config = load(
        'queue = 0\nqueue_timeout = "250ms"', "max_conns = 4", 'host = "Example.COM:8443"'
    )
    upstream = config.upstreams[0]
    assert (upstream.queue, upstream.queue_timeout, upstream.servers[0].max_conns) == (0, 0.25, 4)
    assert probe_host(config, upstream) == "example.com:8443"
    v6 = load(health='host = "[::1]"')
    assert probe_host(v6, v6.upstreams[0]) == "[::1]"


def test_the_probe_host_defaults_to_the_first_proxying_rule_that_names_one() -> None:
    config = load(rule='host = "*.example.com"')
    assert probe_host(config, config.upstreams[0]) == "example.com"
    config = load(rule='host = "shop.example.com"', health='host = "internal"')
    assert probe_host(config, config.upstreams[0]) == "internal"


@pytest.mark.parametrize(("parts", "message"), [
    ({"server": "max_conns = -1"}, "upstreams.app.servers[0].max_conns"),
    ({"upstream": "queue = -5"}, "upstreams.app.queue"),
    ({"upstream": "queue_timeout = 0"}, "upstreams.app.queue_timeout: must be greater than 0"),
    ({"health": 'host = "*.example.com"'}, "upstreams.app.health.host: must be one host name"),
    ({"health": 'host = "a b"'}, "upstreams.app.health.host"),
    ({"health": 'host = "example.com:99999"'}, "upstreams.app.health.host: has an invalid port"),
])  # fmt: skip
def test_errors_name_the_key(parts: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(**parts)
    assert message in str(info.value)
