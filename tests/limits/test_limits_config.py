"""`[limits.NAME]`, `limit = "NAME"` on route rules and `server.max_connections_per_ip`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bext.config import ConfigError, parse_config
from bext.worker.pipeline import Pipeline

RULE = '[[route_rules]]\npattern = "/login/**"\nlimit = "login"\nrespond = 200\n'


def load(text: str) -> object:
    return parse_config(tomllib.loads(text), base_dir=Path("/srv/app"))


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value)


def test_a_limit_and_the_rule_that_names_it() -> None:
    config = parse_config(
        tomllib.loads(
            "[server]\nmax_connections_per_ip = 20\n"
            '[limits.login]\nrate = "300/m"\nburst = 10\nkey = "header:X-Api-Key"\n' + RULE
        ),
        base_dir=Path("/srv/app"),
    )
    (limit,) = config.limits
    assert (limit.name, limit.requests, limit.period, limit.burst, limit.key) == (
        "login",
        300,
        60.0,
        10,
        "header:x-api-key",
    )
    assert limit.interval == 0.2
    assert config.route_rules[0].limit == "login"
    assert config.server.max_connections_per_ip == 20
    assert Pipeline(config).router.rules[0].limit is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits.login]\nburst = 1\n" + RULE, "limits.login.rate: missing"),
        ('[limits.login]\nrate = "5/d"\n' + RULE, "limits.login.rate: expected requests per"),
        ('[limits.login]\nrate = "0/s"\n' + RULE, "limits.login.rate: expected requests per"),
        ("[limits.login]\nrate = 5\n" + RULE, "limits.login.rate: expected a string"),
        ('[limits.login]\nrate = "5/s"\nburst = -1\n' + RULE, "limits.login.burst: must be"),
        (
            '[limits.login]\nrate = "5/s"\nkey = "ip"\n' + RULE,
            'limits.login.key: expected "client_ip"',
        ),
        ('[limits.login]\nrate = "5/s"\nkey = "header:a b"\n' + RULE, "not a valid HTTP header"),
        (
            '[limits.login]\nrate = "5/s"\nbrust = 3\n' + RULE,
            'limits.login.brust: unknown key (did you mean "burst"?)',
        ),
        (
            '[limits.login]\nrate = "5/s"\n' + RULE.replace('"login"', '"logn"'),
            'route_rules[0].limit: no limit named "logn" (did you mean "login"?)',
        ),
        (
            RULE,
            'route_rules[0].limit: no limit named "login" (no [limits.NAME] sections are defined)',
        ),
        (
            "[server]\nmax_connections_per_ip = -1\n",
            "server.max_connections_per_ip: must be at least 0",
        ),
    ],
)
def test_mistakes_are_refused_with_their_key_path(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_an_unused_limit_is_a_warning() -> None:
    config = parse_config(
        tomllib.loads(
            '[limits.spare]\nrate = "1/h"\n[[route_rules]]\npattern = "/**"\nrespond = 200\n'
        ),
        base_dir=Path("/srv/app"),
    )
    assert any(w.startswith("limits.spare: defined, but no route rule") for w in config.warnings)
