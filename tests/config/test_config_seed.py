"""The product guide's sample config must load unchanged and mean what the guide says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bext.config import DEFAULT_CONFIG_PATH, Config, load_config
from bext.config.describe import config_notes, describe_listeners, describe_routes

SEED = Path(__file__).with_name("seed_000.toml")


@pytest.fixture
def seed(tmp_path: Path) -> Config:
    path = tmp_path / DEFAULT_CONFIG_PATH
    shutil.copyfile(SEED, path)
    return load_config(path)


def test_seed_fixture_is_the_guide_verbatim() -> None:
    text = SEED.read_text(encoding="utf-8")
    assert text.startswith('[server]\nport = 3000\napp_dir = "."\n')
    assert text.rstrip().endswith("[waf]\nenabled = true")


def test_seed_server(seed: Config, tmp_path: Path) -> None:
    assert seed.source == tmp_path / "bext.config.toml"
    assert seed.base_dir == tmp_path
    assert seed.server.port == 3000
    assert seed.server.app_dir == tmp_path
    assert seed.server.host == ("0.0.0.0", "::")
    assert seed.server.host_is_default
    assert seed.framework.type == "proxy"


def test_seed_upstream(seed: Config) -> None:
    assert [u.name for u in seed.upstreams] == ["django"]
    django = seed.upstream("django")
    assert django is not None
    assert django.keepalive == 32
    assert django.connect_timeout_ms == 2000
    assert django.read_timeout_ms == 30000
    assert len(django.servers) == 1
    server = django.servers[0]
    assert (server.scheme, server.host, server.port) == ("http", "127.0.0.1", 8000)
    assert server.url == "http://127.0.0.1:8000"
    assert django.health.enabled
    assert django.health.path == "/"
    assert seed.upstream("nope") is None


def test_seed_rules_in_order_with_django_static_roots(seed: Config, tmp_path: Path) -> None:
    rules = seed.route_rules
    assert [(r.index, r.pattern, r.action) for r in rules] == [
        (0, "/static/**", "static"),
        (1, "/media/**", "static"),
        (2, "/**", "proxy"),
    ]
    assert rules[0].root is None
    assert rules[0].static_root(seed.server.app_dir) == tmp_path / "staticfiles"
    assert rules[1].static_root(seed.server.app_dir) == tmp_path / "media"
    assert rules[2].proxy == "django"
    assert all(r.host is None for r in rules)


def test_seed_cache_and_waf_enabled(seed: Config) -> None:
    assert seed.cache.enabled
    assert seed.waf.enabled
    assert seed.warnings == ()


def test_seed_describe(seed: Config, tmp_path: Path) -> None:
    assert describe_routes(seed).splitlines() == [
        f"[0]  *  /static/**  static {tmp_path / 'staticfiles'}",
        f"[1]  *  /media/**   static {tmp_path / 'media'}",
        "[2]  *  /**         proxy django (http://127.0.0.1:8000)",
    ]
    assert describe_listeners(seed) == "http://0.0.0.0:3000, http://[::]:3000"
    assert config_notes(seed) == []


def test_guide_static_rule_with_headers(tmp_path: Path) -> None:
    """The guide's first snippet adds a cache-control header to /static/**."""
    path = tmp_path / "bext.config.toml"
    path.write_text(
        "[[route_rules]]\n"
        'pattern = "/static/**"\n'
        'render = "static"\n'
        'headers = { "cache-control" = "public, max-age=31536000, immutable" }\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.route_rules[0].headers == (
        ("cache-control", "public, max-age=31536000, immutable"),
    )
    assert describe_routes(config).endswith("+1 header")
