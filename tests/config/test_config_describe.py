"""What `bext check` prints: the routing table, listeners and notes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bext.config import Config
from bext.config.describe import config_notes, describe_listeners, describe_routes

Load = Callable[[str], Config]


def test_routing_table_columns(load: Load, tmp_path: Path) -> None:
    config = load(
        """
        [server]
        app_dir = "site"

        [upstreams.django]
        servers = ["http://127.0.0.1:8000", "unix:/run/gunicorn.sock"]

        [[route_rules]]
        host = "www.example.com"
        pattern = "/**"
        redirect = { to = "https://example.com{path}{query}", status = 301 }

        [[route_rules]]
        pattern = "/healthz"
        respond = { status = 200, body = "ok" }
        headers = { "cache-control" = "no-store", "x-robots-tag" = "noindex" }

        [[route_rules]]
        pattern = "/assets/**"
        render = "static"
        root = "dist"

        [[route_rules]]
        pattern = "/**"
        proxy = "django"
        """
    )
    site = tmp_path / "site"
    lines = describe_routes(config).splitlines()
    assert [re.split(r"\s{2,}", line) for line in lines] == [
        ["[0]", "www.example.com", "/**", "redirect 301 -> https://example.com{path}{query}"],
        ["[1]", "*", "/healthz", "respond 200 (text/plain, 2 bytes)", "+2 headers"],
        ["[2]", "*", "/assets/**", f"static {site / 'dist'}"],
        ["[3]", "*", "/**", "proxy django (http://127.0.0.1:8000, unix:/run/gunicorn.sock)"],
    ]
    # Columns line up: every pattern and every action starts at the same offset.
    assert len({line.index("/") for line in lines}) == 1
    assert (
        len(
            {
                line.index(action)
                for line, action in zip(
                    lines, ["redirect", "respond", "static", "proxy"], strict=True
                )
            }
        )
        == 1
    )
    assert lines[1].endswith("+2 headers")


def test_empty_routing_table(load: Load) -> None:
    assert describe_routes(load("")) == "(no route_rules)"


def test_listeners(load: Load) -> None:
    config = load('[server]\nport = 8080\nhost = "localhost"\ntls = "internal"\n')
    assert describe_listeners(config) == (
        "http://127.0.0.1:8080, http://[::1]:8080, https://127.0.0.1:443, https://[::1]:443"
    )


def test_notes_only_for_enabled_inactive_features(load: Load) -> None:
    assert config_notes(load("")) == []
    notes = config_notes(
        load('[waf]\nenabled = true\n[[route_rules]]\npattern = "/s/**"\nrender = "static"\n')
    )
    assert notes == [
        "waf: enabled, but no rule is inspected (proxy rules are by default; add waf = true "
        "to others)",
    ]


def test_notes_include_loader_warnings(load: Load) -> None:
    config = load(
        '[[route_rules]]\npattern = "/a"\nrespond = 200\n'
        '[[route_rules]]\npattern = "/a"\nrespond = 201\n'
    )
    assert config_notes(config) == list(config.warnings)
    assert config_notes(config)[0].startswith("route_rules[1]: same host and pattern")
