"""Readers for the table sections: [server], [framework], [upstreams.NAME], [cache], [waf], [log],
[admin], [metrics].

Each reader takes a `Table`, asks for every key its dataclass knows, applies the checks
that involve more than one key (cert needs key, timeout within interval), and returns the
frozen dataclass. Problems go to the shared `Context`; the caller raises once at the end.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bext.config import values
from bext.config.errors import quote
from bext.config.reader import (
    MISSING,
    Context,
    Table,
    checked,
    header_table,
    is_int,
    key_repr,
    named_tables,
    show_value,
    string_list,
)
from bext.config.schema import (
    ACCESS_FORMATS,
    COMPRESSIBLE_TYPES,
    DEFAULT_HOSTS,
    FRAMEWORK_TYPES,
    HTTP1_ENGINES,
    LOG_LEVELS,
    WAF_MODES,
    AdminConfig,
    CacheConfig,
    CompressionConfig,
    FrameworkConfig,
    HealthConfig,
    KiB,
    LogConfig,
    MetricsConfig,
    MiB,
    ServerConfig,
    StaticConfig,
    TLSCertificate,
    TLSConfig,
    UpstreamConfig,
    UpstreamServer,
    WafConfig,
    WafExclusion,
    default_cache_path,
)
from bext.config.units import format_duration, format_size, parse_duration
from bext.observe import otlp_encode
from bext.protocol import h2_engine
from bext.protocol.h2_limits import HTTP2_ENGINES, H2Limits
from bext.protocol.h3_limits import H3Limits
from bext.shm.health import MAX_UPSTREAM_SERVERS

__all__ = [
    "read_cache",
    "read_compression",
    "read_framework",
    "read_log",
    "read_metrics",
    "read_server",
    "read_static",
    "read_upstreams",
    "read_waf",
]

_MAX_WORKERS = 1024
_MEDIA_RANGE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/(\*|[A-Za-z0-9!#$&^_.+-]+)")


def read_server(ctx: Context, t: Table) -> ServerConfig:
    """`[server]`. The listen host defaults to both stacks; `host_is_default` records that."""
    port = t.get_int("port", 3000, lo=0, hi=65535)

    raw_host = t.take("host")
    hosts: list[str] = []
    if raw_host is not MISSING:
        entries = string_list(ctx, t.sub("host"), raw_host)
        if isinstance(raw_host, list) and not raw_host:
            ctx.error(t.sub("host"), "must list at least one address")
        for path, text in entries:
            for address in checked(ctx, path, values.parse_listen_host, text) or ():
                if address not in hosts:
                    hosts.append(address)

    app_dir = t.get_path("app_dir", ctx.base_dir) or ctx.base_dir

    workers = _read_workers(ctx, t)
    http1_engine = t.get_choice("http1_engine", "auto", HTTP1_ENGINES)
    graceful_timeout = t.get_duration("graceful_timeout", 30.0)
    header_timeout = t.get_duration("header_timeout", 15.0, positive=True)
    body_timeout = t.get_duration("body_timeout", 60.0, positive=True)
    keepalive_timeout = t.get_duration("keepalive_timeout", 75.0, positive=True)
    send_timeout = t.get_duration("send_timeout", 60.0, positive=True)
    body_min_rate = t.get_byte_rate("body_min_rate", 1024)
    lingering_time = t.get_duration("lingering_time", 5.0)
    heartbeat_timeout = t.get_duration("heartbeat_timeout", 20.0, positive=True)
    max_header_size = t.get_size("max_header_size", 16 * KiB, lo=KiB, hi=MiB)
    max_headers = t.get_int("max_headers", 100, lo=1, hi=1000)
    max_uri_length = t.get_size("max_uri_length", 8 * KiB, lo=256, hi=MiB)
    max_body_size = t.get_size("max_body_size", 100 * MiB)
    max_keepalive_requests = t.get_int("max_keepalive_requests", 1000, lo=1)
    max_connections = t.get_int("max_connections", 10000, lo=1)
    max_connections_per_ip = t.get_int("max_connections_per_ip", 0, lo=0)
    server_tokens = t.get_bool("server_tokens", True)

    proxies: list[str] = []
    raw_proxies = t.take("trusted_proxies")
    if raw_proxies is not MISSING:
        for path, text in string_list(ctx, t.sub("trusted_proxies"), raw_proxies):
            network = checked(ctx, path, values.check_network, text)
            if network is not None and network not in proxies:
                proxies.append(network)

    reject_encoded_slash = t.get_bool("reject_encoded_slash", False)
    underscores_in_headers = t.get_bool("underscores_in_headers", False)
    pidfile = t.get_path("pidfile", ctx.base_dir)
    control_socket = t.get_path("control_socket", ctx.base_dir)
    temp_path = _read_temp_path(ctx, t)
    temp_budget = t.get_size("temp_budget", 1024 * MiB)

    tls = None
    raw_tls = t.take("tls")
    if raw_tls is not MISSING:
        tls = _read_tls(ctx, t.sub("tls"), raw_tls)
        if tls is not None and tls.port == port and port != 0:
            ctx.error(t.sub("tls") + ".port", f"must differ from server.port ({port})")
    http2 = _read_http2(ctx, t.get_table("http2"))
    http3 = _read_http3(ctx, t.get_table("http3"))
    t.finish()

    return ServerConfig(
        port=port,
        host=tuple(hosts) if raw_host is not MISSING else DEFAULT_HOSTS,
        host_is_default=raw_host is MISSING,
        app_dir=app_dir,
        workers=workers,
        http1_engine=http1_engine,
        graceful_timeout=graceful_timeout,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        body_min_rate=body_min_rate,
        lingering_time=lingering_time,
        keepalive_timeout=keepalive_timeout,
        send_timeout=send_timeout,
        heartbeat_timeout=heartbeat_timeout,
        max_header_size=max_header_size,
        max_headers=max_headers,
        max_uri_length=max_uri_length,
        max_body_size=max_body_size,
        max_keepalive_requests=max_keepalive_requests,
        max_connections=max_connections,
        max_connections_per_ip=max_connections_per_ip,
        server_tokens=server_tokens,
        trusted_proxies=tuple(proxies),
        reject_encoded_slash=reject_encoded_slash,
        underscores_in_headers=underscores_in_headers,
        pidfile=pidfile,
        control_socket=control_socket,
        temp_path=temp_path,
        temp_budget=temp_budget,
        tls=tls,
        http2=http2,
        http3=http3,
    )


_MAX_WINDOW = 1024 * MiB  # RFC 9113 allows up to 2**31 - 1; more than this is never useful


def _read_windows(ctx: Context, t: Table, stream_key: str, defaults: tuple[int, int],
                  lo: int) -> tuple[int, int]:  # fmt: skip
    """A per-stream receive window and the connection's, which must hold at least one."""
    stream = t.get_size(stream_key, defaults[0], lo=lo, hi=_MAX_WINDOW)
    connection = t.get_size("connection_window", defaults[1], lo=lo, hi=_MAX_WINDOW)
    if connection < stream:
        ctx.error(
            t.sub("connection_window"),
            f"must be at least {stream_key} ({format_size(stream)}), got {format_size(connection)}",
        )
    return stream, connection


# HTTP/2 windows start at 65,535 bytes: a client may send that much before it has seen
# bext's SETTINGS, and the connection window can only grow, so smaller values cannot hold.
_MIN_H2_WINDOW = 64 * KiB


def _read_http2(ctx: Context, t: Table) -> H2Limits:
    """`[server.http2]`: the limits a client may use on one HTTP/2 connection."""
    d = H2Limits()
    engine = t.get_choice("engine", d.engine, HTTP2_ENGINES)
    if not h2_engine.available(engine):
        # Asked for by name, so falling back to h2 would hide the operator's mistake.
        ctx.error(t.sub("engine"), f"{quote(engine)} needs the ngh2 package, which is not "
                  'installed (pip install ngh2, or engine = "auto")')  # fmt: skip
        engine = d.engine
    h2c = t.get_bool("h2c", d.h2c)
    streams = t.get_int("max_concurrent_streams", d.max_concurrent_streams, lo=1, hi=10000)
    window, connection = _read_windows(
        ctx, t, "initial_window_size", (d.initial_window_size, d.connection_window), _MIN_H2_WINDOW
    )
    resets = t.get_int("max_resets", d.max_resets, lo=1, hi=1_000_000)
    t.finish()
    return replace(d, engine=engine, h2c=h2c, max_concurrent_streams=streams,
                   initial_window_size=window, connection_window=connection,
                   max_resets=resets)  # fmt: skip


def _read_http3(ctx: Context, t: Table) -> H3Limits:
    """`[server.http3]`: HTTP/3 limits per connection and per worker."""
    d = H3Limits()
    streams = t.get_int("max_streams", d.max_streams, lo=1, hi=10000)
    connections = t.get_int("max_connections", d.max_connections, lo=1, hi=1_000_000)
    handshakes = t.get_int("max_handshakes", d.max_handshakes, lo=1, hi=1_000_000)
    retry = t.get_bool("retry", d.retry)
    window, connection = _read_windows(
        ctx, t, "stream_window", (d.stream_window, d.connection_window), 16 * KiB
    )
    t.finish()
    return replace(d, max_streams=streams, max_connections=connections,
                   max_handshakes=handshakes, retry=retry, stream_window=window,
                   connection_window=connection)  # fmt: skip


def _read_temp_path(ctx: Context, t: Table) -> Path:
    """`temp_path`: a directory (made by the operator, checked when the pipeline is built);
    NUL and control characters are refused here, before any system call sees them."""
    raw = t.raw.get("temp_path")
    if isinstance(raw, str) and (not raw or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw)):
        t.take("temp_path")
        ctx.error(
            t.sub("temp_path"),
            f"expected a directory path without control characters, got {quote(raw)}",
        )
        return Path(tempfile.gettempdir())
    return t.get_path("temp_path", ctx.base_dir) or Path(tempfile.gettempdir())


def _read_workers(ctx: Context, t: Table) -> int:
    """`workers`: a count, or "auto"/0 for one per CPU (the default)."""
    cpus = os.cpu_count() or 1
    value = t.take("workers")
    if value is MISSING or value == "auto" or (is_int(value) and value == 0):
        return cpus
    if is_int(value) and 1 <= value <= _MAX_WORKERS:
        return int(value)
    ctx.error(
        t.sub("workers"),
        f'expected a number of processes from 1 to {_MAX_WORKERS}, or "auto" '
        f"(one per CPU), got {show_value(value)}",
    )
    return cpus


def _read_tls(ctx: Context, path: str, raw: Any) -> TLSConfig | None:
    """`tls = "internal"` or a `[server.tls]` table; shape only until TLS lands."""
    if raw == "internal":
        return TLSConfig(internal=True)
    if not isinstance(raw, dict):
        ctx.error(path, f'expected "internal" or a [server.tls] table, got {show_value(raw)}')
        return None
    t = Table(ctx, path, raw)
    internal = t.get_bool("internal", False)
    port = t.get_int("port", 443, lo=0, hi=65535)
    cert = t.get_path("cert", ctx.base_dir)
    key = t.get_path("key", ctx.base_dir)
    http3 = t.get_bool("http3", False)
    redirect_http = t.get_bool("redirect_http", False)
    hsts: float | None = None
    raw_hsts = t.take("hsts")
    if raw_hsts is not MISSING and raw_hsts is not False:
        try:
            hsts = parse_duration(raw_hsts)
        except ValueError:
            ctx.error(
                t.sub("hsts"),
                f'expected a max-age such as "365d", or false for no HSTS header, '
                f"got {show_value(raw_hsts)}",
            )
    certificates = _read_certificates(ctx, t)
    t.finish()

    if t.has("cert") != t.has("key"):  # (a value refused above is reported already)
        given, missing = ("cert", "key") if not t.has("key") else ("key", "cert")
        ctx.error(path, f"{given} is set but {missing} is missing (give both or neither)")
    elif internal and cert is not None:
        ctx.error(
            path,
            "internal = true issues its own certificate; remove cert and key "
            "or set internal = false",
        )
    elif not internal and not t.has("cert") and not t.has("key"):
        ctx.error(
            path,
            "needs cert and key (the default certificate), or internal = true "
            "for a certificate from bext's local CA",
        )
    return TLSConfig(
        internal=internal,
        port=port,
        cert=cert,
        key=key,
        http3=http3,
        redirect_http=redirect_http,
        hsts=hsts,
        certificates=certificates,
    )


def _read_certificates(ctx: Context, tls: Table) -> tuple[TLSCertificate, ...]:
    """`[[server.tls.certificates]]`: extra certificates chosen by SNI host."""
    raw = tls.take("certificates")
    if raw is MISSING or not ctx.expect(tls.sub("certificates"), raw, "array"):
        return ()
    result: list[TLSCertificate] = []
    for i, item in enumerate(raw):
        path = f"{tls.sub('certificates')}[{i}]"
        if not ctx.expect(path, item, "table"):
            continue
        t = Table(ctx, path, item)
        hosts: list[str] = []
        raw_hosts = t.take("hosts")
        if raw_hosts is MISSING:
            ctx.error(t.sub("hosts"), "missing; list the host names this certificate serves")
        else:
            for host_path, text in string_list(ctx, t.sub("hosts"), raw_hosts):
                host = checked(ctx, host_path, values.check_host_pattern, text)
                if host is not None:
                    hosts.append(host)
        cert = t.get_path("cert", ctx.base_dir)
        key = t.get_path("key", ctx.base_dir)
        for name, value in (("cert", cert), ("key", key)):
            if value is None and not t.has(name):
                ctx.error(t.sub(name), "missing; each certificate needs cert and key")
        t.finish()
        if cert is not None and key is not None:
            result.append(TLSCertificate(hosts=tuple(hosts), cert=cert, key=key))
    return tuple(result)


# -- [upstreams.NAME] ---------------------------------------------------------------------


def read_upstreams(ctx: Context, t: Table) -> tuple[UpstreamConfig, ...]:
    """`[upstreams.NAME]` tables, in file order (the order `bext check` shows)."""
    result = [
        _read_upstream(ctx, table, name)
        for name, table in named_tables(t, "upstream", skip_bad_names=False)
    ]
    total = sum(len(u.servers) for u in result)
    if total > MAX_UPSTREAM_SERVERS:
        ctx.error(
            t.path,
            f"{total} servers in all; at most {MAX_UPSTREAM_SERVERS} (the shared health "
            "table holds the old and the new configuration's servers during a reload)",
        )
    return tuple(result)


def _read_upstream(ctx: Context, t: Table, name: str) -> UpstreamConfig:
    keepalive = t.get_int("keepalive", 32, lo=0, hi=10000)
    connect_timeout_ms = t.get_int("connect_timeout_ms", 2000, lo=1)
    read_timeout_ms = t.get_int("read_timeout_ms", 30000, lo=1)
    max_temp_file_size = t.get_size("max_temp_file_size", 1024 * MiB)
    servers = _read_servers(ctx, t, name)
    health = _read_health(ctx, t.get_table("health"))
    queue = t.get_int("queue", 1000, lo=0, hi=1_000_000)
    queue_timeout = t.get_duration("queue_timeout", 30.0, positive=True)
    t.finish()
    return UpstreamConfig(
        name=name,
        keepalive=keepalive,
        connect_timeout_ms=connect_timeout_ms,
        read_timeout_ms=read_timeout_ms,
        max_temp_file_size=max_temp_file_size,
        servers=servers,
        health=health,
        queue=queue,
        queue_timeout=queue_timeout,
    )


def _read_servers(ctx: Context, upstream: Table, name: str) -> tuple[UpstreamServer, ...]:
    """The servers array: tables (`[[upstreams.NAME.servers]]`) or plain URL strings."""
    path = upstream.sub("servers")
    example = f'add [[upstreams.{key_repr(name)}.servers]] with url = "http://127.0.0.1:8000"'
    raw = upstream.take("servers")
    if raw is MISSING:
        ctx.error(path, f"missing; an upstream needs at least one server: {example}")
        return ()
    if not isinstance(raw, list):
        ctx.error(path, f"expected an array of tables ([[...servers]]), got {show_value(raw)}")
        return ()
    if not raw:
        ctx.error(path, f"empty; an upstream needs at least one server: {example}")
        return ()
    result: list[UpstreamServer] = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        url: str | None = None
        url_path, weight, max_conns = item_path, 1, 0
        if isinstance(item, str):
            url = item
        elif isinstance(item, dict):
            t = Table(ctx, item_path, item)
            url_path = t.sub("url")
            raw_url = t.take("url")
            if raw_url is MISSING:
                ctx.error(url_path, 'missing; such as url = "http://127.0.0.1:8000"')
            elif ctx.expect(url_path, raw_url, "str"):
                url = raw_url
            weight = t.get_int("weight", 1, lo=1, hi=1000)
            max_conns = t.get_int("max_conns", 0, lo=0, hi=1_000_000)
            t.finish()
        else:
            ctx.error(item_path, f"expected a table with url = ..., got {show_value(item)}")
        if url is None:
            continue
        try:
            server = values.parse_upstream_url(url, weight=weight, base_dir=ctx.base_dir)
        except ValueError as exc:
            ctx.error(url_path, str(exc))
            continue
        if max_conns:
            server = replace(server, max_conns=max_conns)
        if any(_same_address(server, other) for other in result):
            ctx.warn(item_path, f"{quote(url)} is listed twice")
        result.append(server)
    return tuple(result)


def _same_address(a: UpstreamServer, b: UpstreamServer) -> bool:
    """Two URLs can spell one backend ("http://h" and "http://h:80")."""
    return (a.scheme, a.host, a.port, a.unix_path) == (b.scheme, b.host, b.port, b.unix_path)


def _read_health(ctx: Context, t: Table) -> HealthConfig:
    """`[upstreams.NAME.health]`; shape only until active health checks land."""
    enabled = t.get_bool("enabled", False)
    path = t.get_str("path", "/")
    if not path.startswith("/") or any(ch.isspace() or not ch.isprintable() for ch in path):
        ctx.error(t.sub("path"), f'must be a URL path starting with "/", got {quote(path)}')
        path = "/"
    interval = t.get_duration("interval", 5.0, positive=True)
    timeout = t.get_duration("timeout", 2.0, positive=True)
    if timeout > interval:
        ctx.error(
            t.sub("timeout"),
            f"must not exceed interval ({format_duration(interval)}), "
            f"got {format_duration(timeout)}",
        )
    rise = t.get_int("rise", 2, lo=1, hi=100)
    fall = t.get_int("fall", 3, lo=1, hi=100)
    expect_status = _read_expect_status(ctx, t)
    host = t.get_opt_str("host")
    if host is not None:
        try:
            host = _probe_host(host)
        except ValueError as exc:
            ctx.error(t.sub("host"), str(exc))
            host = None
    t.finish()
    return HealthConfig(
        enabled=enabled,
        path=path,
        interval=interval,
        timeout=timeout,
        rise=rise,
        fall=fall,
        expect_status=expect_status,
        host=host,
    )


def _probe_host(text: str) -> str:
    """`health.host`: a `Host` value, "example.com", "[::1]", optionally with ":port"."""
    name, port = text, ""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and (not text.startswith("[") or head.endswith("]")):
        name, port = head, tail
        if not 0 < int(port) < 65536:
            raise ValueError(f"has an invalid port, got {quote(text)}")
    if "*" in name:
        raise ValueError(f"must be one host name, not a pattern, got {quote(text)}")
    try:
        name = values.check_host_pattern(name)
    except ValueError as exc:
        raise ValueError(f'expected a host name such as "example.com": {exc}') from None
    return f"{name}:{port}" if port else name


def _read_expect_status(ctx: Context, t: Table) -> tuple[int, int]:
    """`expect_status`: one status (200) or an inclusive range ([200, 399])."""
    default = (200, 399)
    value = t.take("expect_status")
    if value is MISSING:
        return default
    path = t.sub("expect_status")
    if is_int(value):
        bounds = [value]
    elif isinstance(value, list) and len(value) == 2 and all(is_int(v) for v in value):
        bounds = list(value)
    else:
        ctx.error(
            path,
            f"expected a status such as 200 or a range such as [200, 399], got {show_value(value)}",
        )
        return default
    if not all(100 <= status <= 599 for status in bounds):
        ctx.error(path, f"statuses must be between 100 and 599, got {show_value(value)}")
        return default
    low, high = bounds[0], bounds[-1]
    if low > high:
        ctx.error(path, f"the range is empty: {low} is greater than {high}")
        return default
    return (low, high)


# -- [cache], [waf], [log], [framework] -----------------------------------------------------


def read_cache(ctx: Context, t: Table) -> CacheConfig:
    """`[cache]`: the response cache (see `CacheConfig`)."""
    enabled = t.get_bool("enabled", False)
    path = t.get_path("path", ctx.base_dir) or default_cache_path(ctx.base_dir)
    max_size = t.get_size("max_size", 1024 * MiB, lo=1 * MiB)
    max_object_size = t.get_size("max_object_size", 8 * MiB, lo=1)
    max_memory = t.get_size("max_memory", 64 * MiB)
    default_ttl = t.get_duration("default_ttl", 0.0)
    lock_timeout = t.get_duration("lock_timeout", 5.0)
    t.finish()
    if max_object_size > max_size:
        ctx.error(
            t.sub("max_object_size"),
            f"must not exceed cache.max_size ({format_size(max_size)}), "
            f"got {format_size(max_object_size)}",
        )
    return CacheConfig(
        enabled=enabled,
        path=path,
        max_size=max_size,
        max_object_size=max_object_size,
        max_memory=max_memory,
        default_ttl=default_ttl,
        lock_timeout=lock_timeout,
    )


def read_static(t: Table) -> StaticConfig:
    """`[static]`: cache lifetimes and the small-file memory cache."""
    max_age = t.get_duration("max_age", 0.0)
    memory_cache = t.get_size("memory_cache", 64 * MiB)
    max_cached_file = t.get_size("max_cached_file", 256 * KiB, hi=16 * MiB)
    t.finish()
    return StaticConfig(max_age=max_age, memory_cache=memory_cache, max_cached_file=max_cached_file)


def read_compression(ctx: Context, t: Table) -> CompressionConfig:
    """`[compression]`: on-the-fly brotli/gzip."""
    enabled = t.get_bool("enabled", True)
    min_size = t.get_size("min_size", 1024)
    brotli_quality = t.get_int("brotli_quality", 4, lo=0, hi=11)
    gzip_level = t.get_int("gzip_level", 6, lo=1, hi=9)
    memory_cache = t.get_size("memory_cache", 32 * MiB)
    types = COMPRESSIBLE_TYPES
    raw = t.take("types")
    if raw is not MISSING:
        if not isinstance(raw, list) or not all(
            isinstance(item, str) and _MEDIA_RANGE.fullmatch(item) for item in raw
        ):
            ctx.error(
                t.sub("types"),
                'expected a list of media types such as ["text/*", "application/json"]',
            )
        else:
            types = tuple(item.lower() for item in raw)
    t.finish()
    return CompressionConfig(
        enabled=enabled,
        min_size=min_size,
        types=types,
        brotli_quality=brotli_quality,
        gzip_level=gzip_level,
        memory_cache=memory_cache,
    )


def read_waf(ctx: Context, t: Table) -> WafConfig:
    """`[waf]`: ModSecurity with the OWASP CRS (see `WafConfig`). Whether the engine and the
    rules are present is checked when the pipeline is built (`bext check`, start, reload)."""
    enabled = t.get_bool("enabled", False)
    mode = t.get_choice("mode", "block", WAF_MODES)
    paranoia = t.get_int("paranoia", 1, lo=1, hi=4)
    anomaly_threshold = t.get_int("anomaly_threshold", 5, lo=1, hi=1000)
    crs = t.get_path("crs", ctx.base_dir) or Path("/usr/share/modsecurity-crs")
    rules = _string_list(ctx, t, "rules")
    body_limit = t.get_size("body_limit", 128 * KiB, lo=1, hi=1024 * MiB)
    inspect_cache_hits = t.get_bool("inspect_cache_hits", False)
    audit_log = t.get_path("audit_log", ctx.base_dir)
    exclusions = _read_waf_exclusions(ctx, t)
    t.finish()
    resolved = tuple(
        rule if Path(rule).is_absolute() else str(ctx.base_dir / rule) for rule in rules
    )
    return WafConfig(
        enabled=enabled,
        mode=mode,
        paranoia=paranoia,
        anomaly_threshold=anomaly_threshold,
        crs=crs,
        rules=resolved,
        body_limit=body_limit,
        inspect_cache_hits=inspect_cache_hits,
        audit_log=audit_log,
        exclusions=exclusions,
    )


def _string_list(ctx: Context, t: Table, key: str) -> tuple[str, ...]:
    """An optional string or array of strings (`string_list`), each non-empty and without
    NUL or control characters."""
    raw = t.take(key)
    if raw is MISSING:
        return ()
    result: list[str] = []
    for path, item in string_list(ctx, t.sub(key), raw):
        if not item or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in item):
            ctx.error(path, "must be non-empty, without NUL or control characters")
        else:
            result.append(item)
    return tuple(result)


def _read_waf_exclusions(ctx: Context, t: Table) -> tuple[WafExclusion, ...]:
    """`[[waf.exclusions]]`: a path glob and the CRS rule ids and/or tags it switches off."""
    raw = t.take("exclusions")
    if raw is MISSING:
        return ()
    path = t.sub("exclusions")
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        ctx.error(path, f"expected an array of tables ([[waf.exclusions]]), got {show_value(raw)}")
        return ()
    result: list[WafExclusion] = []
    for index, item in enumerate(raw):
        entry = Table(ctx, f"{path}[{index}]", item)
        pattern = entry.get_opt_str("pattern")
        if pattern is None:
            ctx.error(entry.sub("pattern"), 'missing; a path glob such as "/admin/**"')
        else:
            pattern = checked(ctx, entry.sub("pattern"), values.check_pattern, pattern)
        ids_raw = entry.take("rule_ids")
        rule_ids: tuple[int, ...] = ()
        if ids_raw is not MISSING:
            if not isinstance(ids_raw, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 99_999_999
                for i in ids_raw
            ):
                shown = show_value(ids_raw)
                ctx.error(entry.sub("rule_ids"), f"expected rule ids such as [942100], got {shown}")
            else:
                rule_ids = tuple(ids_raw)
        tags = _string_list(ctx, entry, "tags")
        if any(not re.fullmatch(r"[A-Za-z0-9_./:-]+", tag) for tag in tags):
            ctx.error(entry.sub("tags"), 'tags are CRS tag names such as "attack-sqli"')
            tags = ()
        entry.finish()
        if pattern is not None and not rule_ids and not tags:
            ctx.error(entry.path, "an exclusion needs rule_ids, tags or both")
            continue
        if pattern is not None:
            result.append(WafExclusion(pattern, rule_ids, tags))
    return tuple(result)


ADMIN_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
"""RFC 6750 §2.1's b64token: what may follow ``Bearer`` in an Authorization field."""
ADMIN_TOKEN_MIN = 16


def read_admin(ctx: Context, t: Table) -> AdminConfig:
    """`[admin]`: the bearer token for non-loopback clients of `/__bext/`."""
    token = t.get_opt_str("token")
    if token is not None:
        if ADMIN_TOKEN.fullmatch(token) is None:
            ctx.error(t.sub("token"), "must be letters, digits and - . _ ~ + / (a bearer token)")
            token = None
        elif len(token) < ADMIN_TOKEN_MIN:
            ctx.error(t.sub("token"), f"must be at least {ADMIN_TOKEN_MIN} characters long")
            token = None
    t.finish()
    return AdminConfig(token=token)


STATSD_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_STATSD_PREFIX_MAX = 100
_STATSD_INTERVAL_MIN = 1.0
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


_OTLP_INTERVAL_MIN = 1.0
_OTLP_INTERVAL_MAX = 3600.0
_OTLP_QUEUE_MAX = 1 << 20
OTLP_COMPRESSIONS = ("none", "gzip")
"""`otlp_compression`: the export body as it is, or gzipped (what collectors accept)."""
_OTLP_SERVICE_NAME = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")
"""Printable ASCII, 1 to 255 characters, no space at either end."""


def read_metrics(ctx: Context, t: Table) -> MetricsConfig:
    """`[metrics]`: the StatsD push (address, prefix, interval), `server_timing` and the
    OTLP span export (endpoint, service name, interval, queue)."""
    statsd: tuple[str, int] | None = None
    text = t.get_opt_str("statsd")
    if text is not None:
        try:
            statsd = statsd_address(text)
        except ValueError as exc:
            ctx.error(t.sub("statsd"), str(exc))
    prefix = t.get_str("statsd_prefix", "bext")
    if len(prefix) > _STATSD_PREFIX_MAX or STATSD_PREFIX.fullmatch(prefix) is None:
        ctx.error(
            t.sub("statsd_prefix"),
            f"expected dot-separated names of letters, digits, _ and - (at most "
            f'{_STATSD_PREFIX_MAX} characters) such as "bext" or "web.bext", got {quote(prefix)}',
        )
        prefix = "bext"
    interval = t.get_duration("statsd_interval", 10.0)
    if interval < _STATSD_INTERVAL_MIN:
        ctx.error(
            t.sub("statsd_interval"),
            f"must be at least {format_duration(_STATSD_INTERVAL_MIN)}, "
            f"got {format_duration(interval)}",
        )
        interval = 10.0
    server_timing = t.get_bool("server_timing", False)
    otlp = _read_otlp(ctx, t)
    t.finish()
    return MetricsConfig(statsd=statsd, statsd_prefix=prefix, statsd_interval=interval,
                         server_timing=server_timing, **otlp)  # fmt: skip


def _read_otlp(ctx: Context, t: Table) -> dict[str, Any]:
    """The `otlp_*` keys of `[metrics]`, as MetricsConfig's keyword arguments."""
    endpoint = t.get_opt_str("otlp_endpoint")
    if endpoint is not None:
        try:
            endpoint = otlp_endpoint(endpoint)
        except ValueError as exc:
            ctx.error(t.sub("otlp_endpoint"), str(exc))
            endpoint = None
    if endpoint is not None and not otlp_encode.available():
        ctx.error(
            t.sub("otlp_endpoint"),
            f"needs the OTLP extra, which is not installed ({otlp_encode.LIBRARY} cannot be "
            "imported): pip install 'bext[otel]' into bext's environment",
        )
        endpoint = None
    service = t.get_str("otlp_service_name", "bext")
    if _OTLP_SERVICE_NAME.fullmatch(service) is None:
        ctx.error(
            t.sub("otlp_service_name"),
            f"expected 1 to 255 printable ASCII characters, not starting or ending with a "
            f'space, such as "bext" or "shop-edge", got {quote(service)}',
        )
        service = "bext"
    interval = t.get_duration("otlp_interval", 5.0)
    if not _OTLP_INTERVAL_MIN <= interval <= _OTLP_INTERVAL_MAX:
        ctx.error(
            t.sub("otlp_interval"),
            f"must be from {format_duration(_OTLP_INTERVAL_MIN)} to "
            f"{format_duration(_OTLP_INTERVAL_MAX)}, got {format_duration(interval)}",
        )
        interval = 5.0
    queue = t.get_int("otlp_max_queue", 2048, lo=1, hi=_OTLP_QUEUE_MAX)
    headers = header_table(t, "otlp_headers", values.check_export_header_name,
                           '{ authorization = "Bearer <key>" }', secret=True)  # fmt: skip
    compression = t.get_choice("otlp_compression", "none", OTLP_COMPRESSIONS)
    return {"otlp_endpoint": endpoint, "otlp_service_name": service, "otlp_interval": interval,
            "otlp_max_queue": queue, "otlp_headers": headers,
            "otlp_compression": compression}  # fmt: skip


def otlp_endpoint(text: str) -> str:
    """An OTLP/HTTP traces URL, checked: `http(s)://host[:port]/path[?query]`, the host an
    IP address (IPv6 in brackets) or a DNS name. Returned as given."""
    example = 'expected an OTLP/HTTP URL such as "http://127.0.0.1:4318/v1/traces"'
    if not text.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"{example}, without spaces or control characters, got {quote(text)}")
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed or invalid [IPv6 address]
        raise ValueError(f"not a valid IPv6 address, got {quote(text)}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{example}: http:// or https://, got {quote(text)}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"must not hold a user name or password, got {quote(text)}")
    host_port = parts.netloc.rpartition("@")[2]
    if not host_port.startswith("[") and host_port.count(":") > 1:
        raise ValueError(f"{example} (an IPv6 address goes in brackets), got {quote(text)}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or host_port.endswith(":"):
        raise ValueError(f"has an invalid port (1-65535), got {quote(text)}")
    if parts.fragment or text.endswith("#"):
        raise ValueError(f"must not have a #fragment, got {quote(text)}")
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{example}, got {quote(text)}")
    if host_port.startswith("["):
        try:
            ipaddress.IPv6Address(host)
            if host_port.partition("]")[2][:1] not in ("", ":"):
                raise ValueError
        except ValueError:
            raise ValueError(f"not a valid IPv6 address, got {quote(text)}") from None
    elif _ipv4_or_name(host) is None:
        raise ValueError(f"not a valid host name or IP address, got {quote(text)}")
    if not parts.path.startswith("/"):
        raise ValueError(f'needs a path such as "/v1/traces" after the host, got {quote(text)}')
    return text


def statsd_address(text: str) -> tuple[str, int]:
    """`"host:port"` (an IPv6 address in brackets: `"[::1]:9125"`) -> `(host, port)`.

    The host is an IP address or a DNS name (resolved by the master, not here).
    """
    example = 'expected "host:port" such as "127.0.0.1:9125" or "[::1]:9125"'
    if "://" in text:
        raise ValueError(f"{example}, without a scheme (StatsD is UDP), got {quote(text)}")
    head, sep, port_text = text.rpartition(":")
    if not sep or not head:
        raise ValueError(f"{example}, got {quote(text)}")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"has an invalid port (1-65535), got {quote(text)}")
    if head.startswith("[") and head.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(head[1:-1])), int(port_text)
        except ValueError:
            raise ValueError(f"not a valid IPv6 address, got {quote(text)}") from None
    if ":" in head:
        raise ValueError(f"{example} (an IPv6 address goes in brackets), got {quote(text)}")
    host = _ipv4_or_name(head)
    if host is None:
        raise ValueError(f"not a valid host name or IP address, got {quote(text)}")
    return host, int(port_text)


def _ipv4_or_name(host: str) -> str | None:
    """``host`` as an IPv4 address or a DNS name (lower case, no final dot), or None if it
    is neither."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        name = host.lower().removesuffix(".")
        labels = name.split(".")
        if (
            len(name) <= 253
            and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()  # "300.1.1.1": a mistyped IPv4 address, not a name
        ):
            return name
        return None


def read_log(ctx: Context, t: Table) -> LogConfig:
    """`[log]`: "stdout"/"stderr"/"off" are destinations, anything else a file path."""
    access = t.get_str("access", "stdout")
    if access not in ("stdout", "stderr", "off"):
        access = _log_file(ctx, t.sub("access"), access, "stdout")
    access_format = t.get_choice("access_format", "combined", ACCESS_FORMATS)
    level = t.get_choice("level", "info", LOG_LEVELS)
    error = t.get_str("error", "stderr")
    if error in ("stdout", "off"):
        ctx.error(
            t.sub("error"),
            f'the error log cannot be {quote(error)}; use "stderr" or a file path',
        )
        error = "stderr"
    elif error != "stderr":
        error = _log_file(ctx, t.sub("error"), error, "stderr")
    t.finish()
    return LogConfig(access=access, access_format=access_format, level=level, error=error)


def _log_file(ctx: Context, path: str, text: str, default: str) -> str:
    if not text:
        ctx.error(path, "must not be empty")
        return default
    try:
        return str(values.resolve_path(ctx.base_dir, text))
    except ValueError as exc:
        ctx.error(path, str(exc))
        return default


def read_framework(t: Table) -> FrameworkConfig:
    """`[framework]`: informational for now; bext never runs the app in-process."""
    framework = FrameworkConfig(type=t.get_choice("type", "proxy", FRAMEWORK_TYPES))
    t.finish()
    return framework
