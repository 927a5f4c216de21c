"""Valid configs: defaults, normalisation, path resolution and warnings."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bext.config import Config, parse_config
from bext.config.schema import (
    CacheConfig,
    HealthConfig,
    LogConfig,
    RedirectAction,
    RespondAction,
    RouteRule,
    ServerConfig,
    TLSConfig,
    WafConfig,
    default_cache_path,
    default_static_root,
)
from bext.protocol.h2_limits import H2Limits
from bext.protocol.h3_limits import H3Limits

Load = Callable[[str], Config]

DJANGO = """
[upstreams.django]
[[upstreams.django.servers]]
url = "http://127.0.0.1:8000"
"""


def test_empty_file_gives_defaults(load: Load, tmp_path: Path) -> None:
    config = load("")
    server = config.server
    assert server.port == 3000
    assert server.host == ("0.0.0.0", "::")
    assert server.host_is_default
    assert server.app_dir == tmp_path
    assert server.workers == (os.cpu_count() or 1)
    assert server.http1_engine == "auto"
    assert (server.graceful_timeout, server.header_timeout, server.body_timeout) == (30, 15, 60)
    assert (server.keepalive_timeout, server.send_timeout) == (75, 60)
    assert server.max_header_size == 16384
    assert server.max_headers == 100
    assert server.max_uri_length == 8192
    assert server.max_body_size == 100 * 1024 * 1024
    assert server.max_keepalive_requests == 1000
    assert server.max_connections == 10000
    assert server.server_tokens is True
    assert server.trusted_proxies == ()
    assert server.pidfile is None and server.control_socket is None and server.tls is None
    assert config.framework.type == "proxy"
    assert config.upstreams == () and config.route_rules == ()
    assert dataclasses.replace(config.cache, path=None) == CacheConfig()
    assert config.cache.path == Path(os.environ["CACHE_DIRECTORY"]) / "responses"
    assert config.cache.max_memory == 64 * 1024 * 1024
    assert config.cache.max_size == 1024 * 1024 * 1024 and config.cache.lock_timeout == 5.0
    assert config.cache.max_object_size == 8 * 1024 * 1024
    assert config.waf == WafConfig()
    assert config.log == LogConfig()


def test_defaults_match_dataclass_defaults(load: Load) -> None:
    server = load("").server
    built = ServerConfig(app_dir=server.app_dir)
    assert server == built


def test_upstream_defaults(load: Load) -> None:
    django = load(DJANGO).upstreams[0]
    assert (django.keepalive, django.connect_timeout_ms, django.read_timeout_ms) == (
        32,
        2000,
        30000,
    )
    assert django.health == HealthConfig()
    assert django.health.expect_status == (200, 399)
    assert django.servers[0].weight == 1


def test_units_in_server(load: Load) -> None:
    server = load(
        """
        [server]
        header_timeout = "500ms"
        body_timeout = 90
        keepalive_timeout = "2m"
        graceful_timeout = 0
        max_header_size = "32KB"
        max_uri_length = "4K"
        max_body_size = "1GB"
        """
    ).server
    assert server.header_timeout == 0.5
    assert server.body_timeout == 90.0
    assert server.keepalive_timeout == 120.0
    assert server.graceful_timeout == 0.0
    assert server.max_header_size == 32768
    assert server.max_uri_length == 4096
    assert server.max_body_size == 1024**3


@pytest.mark.parametrize(
    ("toml", "hosts"),
    [
        ('host = "127.0.0.1"', ("127.0.0.1",)),
        ('host = "localhost"', ("127.0.0.1", "::1")),
        ('host = ["0.0.0.0", "[::]", "0.0.0.0"]', ("0.0.0.0", "::")),
        ('host = ["::0:0"]', ("::",)),
    ],
)
def test_hosts(load: Load, toml: str, hosts: tuple[str, ...]) -> None:
    server = load(f"[server]\n{toml}\n").server
    assert server.host == hosts
    assert not server.host_is_default


@pytest.mark.parametrize(("value", "expected"), [('"auto"', None), ("0", None), ("3", 3)])
def test_workers(load: Load, value: str, expected: int | None) -> None:
    workers = load(f"[server]\nworkers = {value}\n").server.workers
    assert workers == (expected or os.cpu_count() or 1)


def test_port_zero_is_ephemeral(load: Load) -> None:
    assert load("[server]\nport = 0\n").server.port == 0


def test_trusted_proxies_normalised(load: Load) -> None:
    server = load('[server]\ntrusted_proxies = ["10.1.2.3/8", "::1", "192.168.0.1"]\n').server
    assert server.trusted_proxies == ("10.0.0.0/8", "::1/128", "192.168.0.1/32")


def test_relative_paths(load: Load, tmp_path: Path) -> None:
    config = load(
        DJANGO
        + """
        [server]
        app_dir = "app"
        pidfile = "run/bext.pid"
        control_socket = "/run/bext.sock"

        [log]
        access = "logs/access.log"
        error = "logs/error.log"

        [upstreams.sock]
        [[upstreams.sock.servers]]
        url = "unix:run/gunicorn.sock"

        [[route_rules]]
        pattern = "/assets/**"
        render = "static"
        root = "public/../dist"

        [[route_rules]]
        pattern = "/files/**"
        render = "static"
        root = "/srv/files"

        [[route_rules]]
        pattern = "/api/**"
        proxy = "sock"

        [[route_rules]]
        pattern = "/**"
        proxy = "django"
        """
    )
    app = tmp_path / "app"
    assert config.server.app_dir == app
    assert config.server.pidfile == tmp_path / "run" / "bext.pid"
    assert config.server.control_socket == Path("/run/bext.sock")
    assert config.log.access == str(tmp_path / "logs" / "access.log")
    assert config.log.error == str(tmp_path / "logs" / "error.log")
    sock = config.upstream("sock")
    assert sock is not None
    assert sock.servers[0].scheme == "unix"
    assert sock.servers[0].unix_path == tmp_path / "run" / "gunicorn.sock"
    assert config.route_rules[0].root == app / "dist"
    assert config.route_rules[0].static_root(app) == app / "dist"
    assert config.route_rules[1].root == Path("/srv/files")


def test_parse_config_uses_base_dir(tmp_path: Path) -> None:
    config = parse_config({"server": {"app_dir": "site"}}, base_dir=tmp_path)
    assert config.source is None
    assert config.server.app_dir == tmp_path / "site"


def test_default_static_root() -> None:
    app = Path("/srv/app")
    assert default_static_root(RouteRule(0, "/static/**", render="static"), app) == (
        app / "staticfiles"
    )
    assert default_static_root(RouteRule(0, "/media/**", render="static"), app) == app / "media"
    assert default_static_root(RouteRule(0, "/**", render="static"), app) == app
    assert default_static_root(RouteRule(0, "/static", render="static"), app) == app


def test_upstream_url_forms(load: Load) -> None:
    config = load(
        """
        [upstreams.a]
        servers = [
            "http://[::1]:8000",
            "http://localhost:8001",
            "http://backend.internal",
            "unix:///run/gunicorn.sock",
            { url = "http://127.0.0.1:9000/", weight = 5 },
        ]
        [[route_rules]]
        pattern = "/**"
        proxy = "a"
        """
    )
    servers = config.upstreams[0].servers
    assert [(s.scheme, s.host, s.port) for s in servers[:3]] == [
        ("http", "::1", 8000),
        ("http", "localhost", 8001),
        ("http", "backend.internal", 80),
    ]
    assert servers[3].unix_path == Path("/run/gunicorn.sock")
    assert (servers[4].port, servers[4].weight) == (9000, 5)


def test_rule_fields(load: Load) -> None:
    config = load(
        DJANGO
        + """
        [[route_rules]]
        pattern = "/healthz"
        host = "Example.COM."
        respond = { status = 200, body = "ok" }
        headers = { "X-Robots-Tag" = "noindex" }

        [[route_rules]]
        pattern = "/old/*/page"
        host = "*.example.com"
        redirect = { to = "https://example.com/new{path}{query}", status = 308 }

        [[route_rules]]
        pattern = "/gone"
        respond = 410

        [[route_rules]]
        pattern = "/docs/**"
        render = "static"
        index = "index.html"
        allow_symlinks = true

        [[route_rules]]
        pattern = "/legacy"
        redirect = "/"

        [[route_rules]]
        pattern = "/upload/**"
        proxy = "django"
        request_buffering = false
        response_buffering = false
        """
    )
    healthz, old, gone, docs, legacy, upload = config.route_rules
    assert healthz.host == "example.com"
    assert healthz.respond == RespondAction(status=200, body="ok")
    assert healthz.headers == (("x-robots-tag", "noindex"),)
    assert old.host == "*.example.com"
    assert old.redirect == RedirectAction(to="https://example.com/new{path}{query}", status=308)
    assert gone.respond == RespondAction(status=410)
    assert docs.index_file == "index.html" and docs.allow_symlinks
    assert legacy.redirect == RedirectAction(to="/", status=302)
    assert not upload.request_buffering and not upload.response_buffering


def test_health_and_expect_status(load: Load) -> None:
    config = load(
        DJANGO
        + """
        [upstreams.django.health]
        enabled = true
        path = "/ping"
        interval = "10s"
        timeout = "1s"
        rise = 1
        fall = 5
        expect_status = 204
        """
    )
    health = config.upstreams[0].health
    assert health == HealthConfig(
        enabled=True, path="/ping", interval=10, timeout=1, rise=1, fall=5, expect_status=(204, 204)
    )


def test_tls_shapes(load: Load, tmp_path: Path) -> None:
    assert load('[server]\ntls = "internal"\n').server.tls == TLSConfig(internal=True)
    tls = load(
        """
        [server.tls]
        cert = "certs/site.pem"
        key = "certs/site.key"
        http3 = true
        redirect_http = true
        hsts = "365d"

        [[server.tls.certificates]]
        hosts = ["api.example.com", "*.api.example.com"]
        cert = "/etc/ssl/api.pem"
        key = "/etc/ssl/api.key"
        """
    ).server.tls
    assert tls is not None
    assert tls.cert == tmp_path / "certs" / "site.pem"
    assert tls.key == tmp_path / "certs" / "site.key"
    assert tls.hsts == 365 * 86400
    assert tls.http3 and tls.redirect_http
    assert tls.certificates[0].hosts == ("api.example.com", "*.api.example.com")
    no_hsts = load("[server.tls]\ninternal = true\nhsts = false\n").server.tls
    assert no_hsts is not None and no_hsts.hsts is None


def test_sections_for_later_features(load: Load, tmp_path: Path) -> None:
    config = load(
        """
        [cache]
        enabled = true
        path = "cachedir"
        max_size = "2GB"
        max_memory = "1GB"
        max_object_size = "16MB"
        default_ttl = "5m"
        lock_timeout = "2s"

        [waf]
        mode = "detect"
        paranoia = 3

        [log]
        access = "off"
        access_format = "json"
        level = "debug"
        """
    )
    assert config.cache == CacheConfig(
        enabled=True,
        path=tmp_path / "cachedir",
        max_size=2 * 1024**3,
        max_object_size=16 * 1024**2,
        max_memory=1024**3,
        default_ttl=300.0,
        lock_timeout=2.0,
    )
    assert config.waf == WafConfig(enabled=False, mode="detect", paranoia=3)
    assert config.log == LogConfig(access="off", access_format="json", level="debug")


def test_host_specific_catch_all_leaves_other_hosts_reachable(load: Load) -> None:
    config = load(
        DJANGO
        + """
        [[route_rules]]
        host = "admin.example.com"
        pattern = "/**"
        proxy = "django"

        [[route_rules]]
        pattern = "/**"
        respond = { status = 404 }
        """
    )
    assert len(config.route_rules) == 2


def test_warnings_do_not_refuse(load: Load) -> None:
    config = load(
        DJANGO
        + """
        [upstreams.spare]
        servers = ["http://127.0.0.1:9000", "http://127.0.0.1:9000"]

        [[route_rules]]
        pattern = "/a"
        respond = 200

        [[route_rules]]
        pattern = "/a"
        respond = 201

        [[route_rules]]
        pattern = "/**"
        proxy = "django"
        """
    )
    assert config.warnings == (
        'upstreams.spare.servers[1]: "http://127.0.0.1:9000" is listed twice',
        "route_rules[1]: same host and pattern as route_rules[0], which is tried first; "
        "this rule never matches",
        "upstreams.spare: defined, but no route rule proxies to it",
    )


def test_config_is_frozen(load: Load) -> None:
    config = load("")
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_http2_and_http3_limits(load: Callable[[str], Config]) -> None:
    default = load("")
    assert default.server.http2 == H2Limits() and default.server.http3 == H3Limits()
    config = load(
        '[server.http2]\nmax_concurrent_streams = 32\ninitial_window_size = "64KB"\n'
        'connection_window = "4MB"\nh2c = false\nmax_resets = 50\n'
        "[server.http3]\nmax_streams = 16\nmax_connections = 100\nmax_handshakes = 10\n"
        'retry = false\nstream_window = "128KB"\nconnection_window = "2MB"\n'
    )
    h2, h3 = config.server.http2, config.server.http3
    assert (h2.max_concurrent_streams, h2.initial_window_size, h2.connection_window) == (
        32,
        64 * 1024,
        4 * 1024 * 1024,
    )
    assert h2.h2c is False and h2.max_resets == 50
    assert (h3.max_streams, h3.max_connections, h3.max_handshakes, h3.retry) == (16, 100, 10, False)
    assert (h3.stream_window, h3.connection_window) == (128 * 1024, 2 * 1024 * 1024)


def test_default_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/bext:/var/cache/bext/tmp")
    assert default_cache_path(tmp_path) == Path("/var/cache/bext/responses")  # systemd's
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    one, other = default_cache_path(tmp_path / "a"), default_cache_path(tmp_path / "b")
    if os.geteuid() == 0:
        assert one == other == Path("/var/cache/bext/responses")
    else:
        assert one.parent == other.parent == tmp_path / "xdg" / "bext"
        assert one != other  # one store per site
