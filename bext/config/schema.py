"""The typed shape of `bext.config.toml`: one frozen dataclass per TOML table.

These classes are the single source of truth for what a configuration can say. The loader
(`bext.config.load`) fills them from TOML and refuses anything they cannot represent; the
master, workers and `bext check` only ever see these objects, never raw TOML. They are
frozen so a loaded config can be shared by reference and swapped whole on reload without
anyone mutating it underneath a running worker.

Every field has the default a missing key gets, so code and tests can also build configs
directly (`Config(source=None, base_dir=Path("/srv/app"))`). Values built that way skip the
loader's validation; build through `parse_config` when the input is user-supplied.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bext.protocol.h2_limits import H2Limits
from bext.protocol.h3_limits import H3Limits

__all__ = [
    "DJANGO_STATIC_DIRS",
    "CacheConfig",
    "Config",
    "FrameworkConfig",
    "HealthConfig",
    "LimitConfig",
    "LogConfig",
    "MetricsConfig",
    "RedirectAction",
    "RespondAction",
    "RouteRule",
    "ServerConfig",
    "TLSCertificate",
    "TLSConfig",
    "UpstreamConfig",
    "UpstreamServer",
    "WafConfig",
    "default_static_root",
]

KiB = 1024
MiB = 1024 * KiB

FRAMEWORK_TYPES = ("proxy", "static", "django", "flask", "fastapi", "starlette")
HTTP1_ENGINES = ("auto", "httptools", "h11")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
REDIRECT_PLACEHOLDERS = ("path", "query")
LOG_LEVELS = ("debug", "info", "warning", "error")
ACCESS_FORMATS = ("combined", "json")
WAF_MODES = ("block", "detect")
DEFAULT_HOSTS = ("0.0.0.0", "::")
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"

# URL prefix -> folder under app_dir, following Django's conventions: `collectstatic`
# gathers into STATIC_ROOT (conventionally BASE_DIR / "staticfiles") and uploads land in
# MEDIA_ROOT (conventionally BASE_DIR / "media"). This is what lets the seed's two-line
# static rules work without a `root`.
DJANGO_STATIC_DIRS: tuple[tuple[str, str], ...] = (
    ("/static/", "staticfiles"),
    ("/media/", "media"),
)


def _cpu_count() -> int:
    """One worker per core is the default; `os.cpu_count()` may be unknown (None)."""
    return os.cpu_count() or 1


def _default_temp_path() -> Path:
    """`server.temp_path`'s default: Python's temp dir ($TMPDIR, else /tmp) at load."""
    return Path(tempfile.gettempdir())


@dataclass(frozen=True, slots=True)
class TLSCertificate:
    """An SNI certificate: served when the client asks for one of `hosts`."""

    hosts: tuple[str, ...]
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """`[server.tls]`, or `tls = "internal"`: the HTTPS (and HTTP/3) listener.

    `internal` means bext issues certificates from its own local CA (development and
    private networks). Otherwise `cert`/`key` are the default certificate, and
    `certificates` adds per-host ones chosen by SNI. `hsts` is the Strict-Transport-Security
    max-age in seconds, or None to send no HSTS header.
    """

    internal: bool = False
    port: int = 443
    cert: Path | None = None
    key: Path | None = None
    http3: bool = False
    redirect_http: bool = False
    hsts: float | None = None
    certificates: tuple[TLSCertificate, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """`[server]`: listeners, process model, protocol limits and timeouts.

    Durations are float seconds and sizes int bytes, whatever units the file used.
    `host_is_default` tells the master the operator never asked for IPv6 explicitly, so a
    host without an IPv6 stack should start on IPv4 alone instead of failing.
    `max_body_size = 0` disables the request body limit (as nginx's client_max_body_size 0).
    `max_connections` is per worker.
    """

    port: int = 3000
    host: tuple[str, ...] = DEFAULT_HOSTS
    host_is_default: bool = True
    app_dir: Path = field(default_factory=Path.cwd)
    workers: int = field(default_factory=_cpu_count)
    http1_engine: str = "auto"
    graceful_timeout: float = 30.0
    header_timeout: float = 15.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    send_timeout: float = 60.0
    body_min_rate: int = 1024
    """Bytes per second a request body must average over ``BODY_RATE_WINDOW`` (0: off)."""
    lingering_time: float = 5.0
    """How long a closing connection still reads (and drops) what the client sends."""
    heartbeat_timeout: float = 20.0
    """A worker whose event loop has not beaten for this long is stuck: killed, replaced."""
    max_header_size: int = 16 * KiB
    max_headers: int = 100
    max_uri_length: int = 8 * KiB
    max_body_size: int = 100 * MiB
    max_keepalive_requests: int = 1000
    max_connections: int = 10000
    max_connections_per_ip: int = 0
    """Connections one client address may hold open, all workers together (0: no limit)."""
    server_tokens: bool = True
    trusted_proxies: tuple[str, ...] = ()
    reject_encoded_slash: bool = False
    """Answer 400 to a path holding ``%2F`` instead of routing it as ``/``."""
    underscores_in_headers: bool = False
    """Forward request header names with ``_`` upstream (dropped by default, as nginx)."""
    pidfile: Path | None = None
    control_socket: Path | None = None
    temp_path: Path = field(default_factory=_default_temp_path)
    """Where proxied request bodies and response read-ahead spill to disk."""
    temp_budget: int = 1024 * MiB
    """Bytes all of one worker's temp files (request spools, read-ahead) may hold."""
    tls: TLSConfig | None = None
    http2: H2Limits = field(default_factory=H2Limits)
    """`[server.http2]`: per-connection HTTP/2 limits (TLS by ALPN, and h2c)."""
    http3: H3Limits = field(default_factory=H3Limits)
    """`[server.http3]`: per-connection and per-worker HTTP/3 limits (with `tls.http3`)."""


@dataclass(frozen=True, slots=True)
class FrameworkConfig:
    """`[framework]`: what sits behind bext. bext never runs Python in-process."""

    type: str = "proxy"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """`[upstreams.NAME.health]`: active health checks (validated now, active later).

    A server is marked down after `fall` consecutive failures and up again after `rise`
    successes; a probe succeeds when the status is within `expect_status` (inclusive).
    """

    enabled: bool = False
    path: str = "/"
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    expect_status: tuple[int, int] = (200, 399)
    host: str | None = None
    """The probe's `Host`; None: the first proxying route rule's host, else "localhost"."""


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """One backend address of an upstream group, as written (`url`) and parsed.

    For `scheme == "http"`, `host` (lowercase, IPv6 without brackets) and `port` are set;
    for `scheme == "unix"`, `unix_path` is the absolute socket path.
    """

    url: str
    weight: int = 1
    max_conns: int = 0
    """Requests in flight to this server from all workers together (0: no limit)."""
    scheme: str = "http"
    host: str | None = None
    port: int | None = None
    unix_path: Path | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """`[upstreams.NAME]`: a group of equivalent backends (Gunicorn/Uvicorn processes)."""

    name: str
    keepalive: int = 32
    connect_timeout_ms: int = 2000
    read_timeout_ms: int = 30000
    max_temp_file_size: int = 1024 * MiB
    """Read-ahead of one response on disk (0: memory read-ahead only)."""
    servers: tuple[UpstreamServer, ...] = ()
    health: HealthConfig = field(default_factory=HealthConfig)
    queue: int = 1000
    """Requests that may wait (per worker) when every server is at `max_conns`."""
    queue_timeout: float = 30.0
    """Seconds a request may wait in that queue before it is answered `503`."""


LIMIT_KEYS = ("client_ip", "header:")
"""What a `[limits.NAME]` table may count by: the client address, or a header's value."""


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """`[limits.NAME]`: a request rate, shared by every worker, that route rules name.

    `requests` per `period` seconds ("5/s" is 5 per 1.0, "300/m" 300 per 60.0); `burst`
    more may arrive at once (nginx's `limit_req burst=N nodelay`). `key` is "client_ip"
    (after `server.trusted_proxies`) or "header:<name>" with the name lowercased; a
    request without that header counts under its client address.
    """

    name: str
    requests: int = 1
    period: float = 1.0
    burst: int = 0
    key: str = "client_ip"

    @property
    def interval(self) -> float:
        """Seconds between two requests at the sustained rate."""
        return self.period / self.requests


@dataclass(frozen=True, slots=True)
class RespondAction:
    """`respond = { status = 200, body = "ok" }`: a fixed response, no upstream involved."""

    status: int = 200
    body: str = ""
    content_type: str = DEFAULT_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class RedirectAction:
    """`redirect = { to = "https://example.com{path}", status = 301 }`.

    `to` may contain `{path}` and `{query}`: the request's path as sent, and its raw query
    string without the "?" (see `bext.handlers.redirect`). It is ASCII, percent-encoded.
    """

    to: str
    status: int = 302


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One `[[route_rules]]` entry. Rules are tried in file order; `index` is 0-based.

    Exactly one action is set: `render` ("static"), `proxy` (an upstream name), `respond`
    or `redirect`. `headers` are added to responses of this rule, names lowercased.
    `index_file` is the TOML key `index` (the file served for a directory, static only).
    """

    index: int
    pattern: str
    host: str | None = None
    render: str | None = None
    root: Path | None = None
    proxy: str | None = None
    respond: RespondAction | None = None
    redirect: RedirectAction | None = None
    headers: tuple[tuple[str, str], ...] = ()
    index_file: str | None = None
    request_buffering: bool = True
    response_buffering: bool = True
    allow_symlinks: bool = False
    limit: str | None = None
    """The `[limits.NAME]` rate limit applied once this rule matched."""
    cache: bool | None = None
    """Proxy rules only: whether the response cache serves this rule (None: `[cache] enabled`)."""
    cache_set_cookie: bool = False
    """Proxy rules only: store responses that set cookies (never, by default)."""
    waf: bool | None = None
    """Whether the WAF inspects this rule's requests (None: proxy rules when `[waf] enabled`)."""
    allow: tuple[str, ...] = ()
    """Client networks allowed (empty: every client), after `trusted_proxies`."""
    deny: tuple[str, ...] = ()
    """Client networks refused (403), even inside `allow`."""
    methods: tuple[str, ...] = ()
    """Request methods allowed (empty: any); others get 405 with `Allow`."""
    max_body_size: int | None = None
    """Request bodies larger than this get 413 (None: `server.max_body_size` only)."""

    @property
    def action(self) -> str:
        """The kind of action: "static", "proxy", "respond" or "redirect"."""
        if self.render is not None:
            return self.render
        if self.proxy is not None:
            return "proxy"
        if self.respond is not None:
            return "respond"
        return "redirect"

    def uses_cache(self, cache_enabled: bool) -> bool:
        """Whether the response cache serves this rule: proxy rules only, by the rule's
        own `cache` or else `[cache] enabled`."""
        if self.proxy is None:
            return False
        return self.cache if self.cache is not None else cache_enabled

    def uses_waf(self, waf_enabled: bool) -> bool:
        """Whether the WAF inspects this rule's requests: when `[waf] enabled`, by the
        rule's own `waf`, else for proxy rules only (static files, `respond` and
        `redirect` rules have nothing an attack could reach)."""
        if not waf_enabled:
            return False
        return self.waf if self.waf is not None else self.proxy is not None

    def static_root(self, app_dir: Path) -> Path:
        """The folder a static rule serves from; see `default_static_root`."""
        return default_static_root(self, app_dir)


def default_static_root(rule: RouteRule, app_dir: Path) -> Path:
    """`rule.root` if set, else the Django-conventional folder for the rule's URL prefix.

    "/static/**" serves app_dir/staticfiles (STATIC_ROOT after `collectstatic`),
    "/media/**" serves app_dir/media (MEDIA_ROOT), anything else app_dir itself.
    """
    if rule.root is not None:
        return rule.root
    for prefix, folder in DJANGO_STATIC_DIRS:
        if rule.pattern.startswith(prefix):
            return app_dir / folder
    return app_dir


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """`[cache]`: the shared response cache in front of proxy rules (RFC 9111).

    `path` is the store's directory (LMDB plus body files), shared by every worker and
    kept across reloads, upgrades and restarts; `max_size` bounds it (least recently used
    entries go first) and `max_object_size` each response (larger ones pass through
    unstored). `max_memory` is each worker's memory tier for small hot entries.
    `lock_timeout` bounds how long concurrent misses wait for the one request that fills
    the entry. `default_ttl` is the lifetime of responses that give none (0: not stored).
    """

    enabled: bool = False
    path: Path | None = None
    max_size: int = 1024 * MiB
    max_object_size: int = 8 * MiB
    max_memory: int = 64 * MiB
    default_ttl: float = 0.0
    lock_timeout: float = 5.0

    def store_path(self) -> Path:
        """`path`, or the default for a config file in the current directory."""
        return self.path if self.path is not None else default_cache_path(Path.cwd())


def default_cache_path(config_dir: Path) -> Path:
    """Where the store lives without `[cache] path`: under systemd's `$CACHE_DIRECTORY`
    (the package's `/var/cache/bext`), `/var/cache/bext` for root, else under
    `$XDG_CACHE_HOME/bext` (`~/.cache/bext`) in a directory named after the config's
    folder, so that two sites of one user never share a store."""
    directory = os.environ.get("CACHE_DIRECTORY")
    if directory:
        return Path(directory.split(":")[0]) / "responses"
    if os.geteuid() == 0:
        return Path("/var/cache/bext/responses")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(str(config_dir.absolute()).encode()).hexdigest()[:16]
    return Path(base) / "bext" / digest


@dataclass(frozen=True, slots=True)
class StaticConfig:
    """`[static]`: how `render = "static"` rules serve files.

    Content-addressed names (Django's `name.<12 hex>.ext`, bundlers' `name-<hash>.ext`) are
    cached by browsers for a year (`immutable`); everything else gets `max_age` plus
    validators, so an edited file shows on the next revalidation. A rule's `headers` win.
    """

    max_age: float = 0.0
    memory_cache: int = 64 * MiB
    max_cached_file: int = 256 * KiB


COMPRESSIBLE_TYPES: tuple[str, ...] = (
    "text/*",
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/wasm",
    "image/svg+xml",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
)


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    """`[compression]`: on-the-fly brotli/gzip for static and proxied responses (nginx
    `gzip on`). Files with a precompressed `.br`/`.gz` beside them use that instead."""

    enabled: bool = True
    min_size: int = 1024
    types: tuple[str, ...] = COMPRESSIBLE_TYPES
    brotli_quality: int = 4
    gzip_level: int = 6
    memory_cache: int = 32 * MiB


@dataclass(frozen=True, slots=True)
class WafExclusion:
    """`[[waf.exclusions]]`: CRS rules switched off for the paths a glob matches (a false
    positive silenced without writing SecLang). `rule_ids` and `tags` as CRS names them."""

    pattern: str
    rule_ids: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WafConfig:
    """`[waf]`: ModSecurity v3 with the OWASP Core Rule Set, in front of proxy rules.

    `crs` is the CRS directory (Debian's `/usr/share/modsecurity-crs` by default: its
    `rules/*.conf` are loaded in order); `rules` are extra SecLang files or globs loaded
    after it. The CRS setup (paranoia level, anomaly threshold, methods) is generated from
    these keys. `body_limit` bytes of a request body are inspected; the rest passes on.
    """

    enabled: bool = False
    mode: str = "block"
    paranoia: int = 1
    anomaly_threshold: int = 5
    crs: Path = Path("/usr/share/modsecurity-crs")
    rules: tuple[str, ...] = ()
    body_limit: int = 128 * KiB
    inspect_cache_hits: bool = False
    audit_log: Path | None = None
    exclusions: tuple[WafExclusion, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """`[admin]`: who may use the endpoints under `/__bext/` besides loopback peers.

    `token` is a bearer token (`Authorization: Bearer <token>`); without one, only
    clients connecting from 127.0.0.0/8 or ::1 reach the admin endpoints.
    """

    token: str | None = None

    def __repr__(self) -> str:
        return f"AdminConfig(token={'<set>' if self.token else None})"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """`[metrics]`: pushing the shared counters to a StatsD server, and `Server-Timing`.

    `statsd` is the server's `(host, port)` (UDP; None: off; the TOML key is
    `"host:port"`, an IPv6 address in brackets). Every `statsd_interval` seconds the master
    sends what changed since the last send, under `statsd_prefix` (Gunicorn's
    `gunicorn.requests` ... names with `bext` in place of `gunicorn`: see
    `bext.master.statsd`). `server_timing`: send a `Server-Timing` response header (read
    here, used by the response path).

    `otlp_endpoint` (None: off) is the OTLP/HTTP traces URL each worker POSTs its spans to
    every `otlp_interval` seconds, as `otlp_service_name`, keeping at most
    `otlp_max_queue` spans in between (`bext.observe.otlp`; needs the `bext[otel]` extra).
    `otlp_headers` go with every export (a collector's API key: never shown by `repr`),
    and `otlp_compression` ("gzip" or "none") is the body's encoding.
    """

    statsd: tuple[str, int] | None = None
    statsd_prefix: str = "bext"
    statsd_interval: float = 10.0
    server_timing: bool = False
    otlp_endpoint: str | None = None
    otlp_service_name: str = "bext"
    otlp_interval: float = 5.0
    otlp_max_queue: int = 2048
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    otlp_compression: str = "none"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """`[log]`. `access` is "stdout", "stderr", "off" or an absolute file path; `error` is
    "stderr" or an absolute file path."""

    access: str = "stdout"
    access_format: str = "combined"
    level: str = "info"
    error: str = "stderr"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated configuration.

    `source` is the file it came from (None when parsed from memory) and `base_dir` the
    folder relative paths were resolved against. `warnings` are things worth telling the
    operator that do not stop bext from running (printed by `bext check`).
    """

    source: Path | None
    base_dir: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    upstreams: tuple[UpstreamConfig, ...] = ()
    route_rules: tuple[RouteRule, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    static: StaticConfig = field(default_factory=StaticConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    waf: WafConfig = field(default_factory=WafConfig)
    log: LogConfig = field(default_factory=LogConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: tuple[LimitConfig, ...] = ()
    warnings: tuple[str, ...] = ()

    def limit(self, name: str) -> LimitConfig | None:
        """The `[limits.NAME]` table called `name`, or None."""
        for limit in self.limits:
            if limit.name == name:
                return limit
        return None

    def upstream(self, name: str) -> UpstreamConfig | None:
        """The upstream group called `name`, or None."""
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None
