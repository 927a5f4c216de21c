"""Refused configs: every problem names its key path, says why, and suggests fixes for typos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bext.config import ConfigError, load_config, parse_config

Problems = Callable[[str], list[str]]

DJANGO = """
[upstreams.django]
[[upstreams.django.servers]]
url = "http://127.0.0.1:8000"
"""


def rule(body: str) -> str:
    """A config with the django upstream and one route rule."""
    return DJANGO + "\n[[route_rules]]\n" + body + "\n"


BAD_CONFIGS = [
    # (id, toml, key path, reason substring)
    ("typo-key", "[server]\nprot = 3000", "server.prot", 'unknown key (did you mean "port"?)'),
    ("typo-section", "[servr]\nport = 3000", "servr", 'unknown section (did you mean "server"?)'),
    (
        "typo-rule-key",
        rule('pattren = "/**"\nproxy = "django"'),
        "route_rules[0].pattren",
        'unknown key (did you mean "pattern"?)',
    ),
    (
        "port-string",
        '[server]\nport = "3000"',
        "server.port",
        'expected an integer, got "3000" (a string)',
    ),
    ("port-bool", "[server]\nport = true", "server.port", "expected an integer, got true"),
    ("port-range", "[server]\nport = 70000", "server.port", "between 0 and 65535, got 70000"),
    ("app-dir-type", "[server]\napp_dir = 5", "server.app_dir", "expected a string, got 5"),
    ("workers-negative", "[server]\nworkers = -1", "server.workers", 'or "auto"'),
    ("workers-word", '[server]\nworkers = "many"', "server.workers", 'got "many" (a string)'),
    (
        "http1-engine",
        '[server]\nhttp1_engine = "h12"',
        "server.http1_engine",
        'expected one of "auto", "httptools", "h11", got "h12" (did you mean "h11"?)',
    ),
    ("listen-hostname", '[server]\nhost = "example.com"', "server.host", "expected an IP address"),
    ("listen-list-item", '[server]\nhost = ["::", 5]', "server.host[1]", "expected a string"),
    (
        "bad-cidr",
        '[server]\ntrusted_proxies = ["10.0.0.0/33"]',
        "server.trusted_proxies[0]",
        'expected an IP address or CIDR such as "10.0.0.0/8", got "10.0.0.0/33"',
    ),
    (
        "bad-duration",
        '[server]\nheader_timeout = "30 seconds"',
        "server.header_timeout",
        'expected a duration such as "30s" or "500ms", got "30 seconds"',
    ),
    ("zero-timeout", "[server]\nheader_timeout = 0", "server.header_timeout", "greater than 0"),
    (
        "bad-size",
        '[server]\nmax_body_size = "lots"',
        "server.max_body_size",
        'expected a size such as "16KB" or "100MB", got "lots"',
    ),
    (
        "size-range",
        '[server]\nmax_header_size = "512"',
        "server.max_header_size",
        "must be between 1KiB and 1MiB, got 512 bytes",
    ),
    ("max-headers", "[server]\nmax_headers = 0", "server.max_headers", "between 1 and 1000"),
    (
        "tls-cert-without-key",
        '[server.tls]\ncert = "site.pem"',
        "server.tls",
        "cert is set but key is missing",
    ),
    ("tls-nothing", "[server.tls]\nhttp3 = true", "server.tls", "needs cert and key"),
    ("tls-string", '[server]\ntls = "external"', "server.tls", 'expected "internal"'),
    (
        "tls-port-clash",
        '[server]\nport = 443\ntls = "internal"',
        "server.tls.port",
        "must differ from server.port (443)",
    ),
    (
        "hsts-true",
        "[server]\n[server.tls]\ninternal = true\nhsts = true",
        "server.tls.hsts",
        'such as "365d", or false for no HSTS header, got true',
    ),
    (
        "framework",
        '[framework]\ntype = "djano"',
        "framework.type",
        'got "djano" (did you mean "django"?)',
    ),
    (
        "typo-upstream",
        DJANGO
        + '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/**"\nproxy = "djnago"\n',
        "route_rules[2].proxy",
        'no upstream named "djnago" (did you mean "django"?)',
    ),
    (
        "proxy-no-upstreams",
        '[[route_rules]]\npattern = "/**"\nproxy = "django"',
        "route_rules[0].proxy",
        "no [upstreams.NAME] sections are defined",
    ),
    (
        "https-upstream",
        '[upstreams.django]\nservers = ["https://127.0.0.1:8443"]',
        "upstreams.django.servers[0]",
        "https upstreams are not supported yet; Gunicorn/Uvicorn listen on plain HTTP",
    ),
    (
        "upstream-path",
        '[upstreams.django]\n[[upstreams.django.servers]]\nurl = "http://127.0.0.1:8000/app"',
        "upstreams.django.servers[0].url",
        'must not have a path ("/app")',
    ),
    (
        "upstream-query",
        '[upstreams.django]\nservers = ["http://127.0.0.1:8000?x=1"]',
        "upstreams.django.servers[0]",
        "must not have a query",
    ),
    (
        "upstream-unix-host",
        '[upstreams.django]\nservers = ["unix://run/g.sock"]',
        "upstreams.django.servers[0]",
        'expected "unix:/path/to.sock"',
    ),
    (
        "upstream-bad-port",
        '[upstreams.django]\nservers = ["http://127.0.0.1:99999"]',
        "upstreams.django.servers[0]",
        "invalid port",
    ),
    (
        "empty-servers",
        "[upstreams.django]\nservers = []",
        "upstreams.django.servers",
        "empty; an upstream needs at least one server",
    ),
    (
        "missing-servers",
        "[upstreams.django]\nkeepalive = 8",
        "upstreams.django.servers",
        "missing; an upstream needs at least one server",
    ),
    (
        "weight",
        DJANGO.replace('8000"', '8000"\nweight = 0'),
        "upstreams.django.servers[0].weight",
        "between 1 and 1000",
    ),
    (
        "keepalive",
        '[upstreams.django]\nkeepalive = -1\nservers = ["http://127.0.0.1:8000"]',
        "upstreams.django.keepalive",
        "between 0 and 10000, got -1",
    ),
    (
        "key-in-wrong-table",
        DJANGO + "keepalive = 4",
        "upstreams.django.servers[0].keepalive",
        "unknown key",
    ),
    (
        "upstream-name",
        '[upstreams."my app"]\nservers = ["http://127.0.0.1:8000"]',
        'upstreams."my app"',
        "upstream names may use letters",
    ),
    (
        "health-path",
        DJANGO + '[upstreams.django.health]\npath = "health"',
        "upstreams.django.health.path",
        'must be a URL path starting with "/"',
    ),
    (
        "health-timeout",
        DJANGO + '[upstreams.django.health]\ninterval = "1s"\ntimeout = "2s"',
        "upstreams.django.health.timeout",
        "must not exceed interval (1s), got 2s",
    ),
    (
        "expect-status",
        DJANGO + "[upstreams.django.health]\nexpect_status = [400, 200]",
        "upstreams.django.health.expect_status",
        "the range is empty",
    ),
    (
        "expect-status-range",
        DJANGO + "[upstreams.django.health]\nexpect_status = 600",
        "upstreams.django.health.expect_status",
        "between 100 and 599",
    ),
    (
        "glob-double-star",
        rule('pattern = "/a**"\nproxy = "django"'),
        "route_rules[0].pattern",
        '"**" must be a whole path segment',
    ),
    (
        "glob-triple-star",
        rule('pattern = "/***"\nproxy = "django"'),
        "route_rules[0].pattern",
        'use "**" for any number of segments',
    ),
    (
        "glob-no-slash",
        rule('pattern = "static/**"\nproxy = "django"'),
        "route_rules[0].pattern",
        'must start with "/"',
    ),
    (
        "glob-query",
        rule('pattern = "/search?q=*"\nproxy = "django"'),
        "route_rules[0].pattern",
        '"?" or "#"',
    ),
    ("pattern-missing", rule('proxy = "django"'), "route_rules[0].pattern", "missing"),
    (
        "host-port",
        rule('pattern = "/**"\nhost = "example.com:8080"\nproxy = "django"'),
        "route_rules[0].host",
        "ports are not part of host matching",
    ),
    (
        "host-middle-star",
        rule('pattern = "/**"\nhost = "api.*.example.com"\nproxy = "django"'),
        "route_rules[0].host",
        "a wildcard is only allowed as the whole first label",
    ),
    (
        "host-space",
        rule('pattern = "/**"\nhost = "exa mple.com"\nproxy = "django"'),
        "route_rules[0].host",
        "must not contain spaces",
    ),
    (
        "two-actions",
        rule('pattern = "/**"\nrender = "static"\nproxy = "django"'),
        "route_rules[0]",
        "a rule needs exactly one of render, proxy, respond, redirect; it has render, proxy",
    ),
    (
        "no-action",
        rule('pattern = "/**"'),
        "route_rules[0]",
        "a rule needs exactly one of render, proxy, respond, redirect",
    ),
    (
        "render-typo",
        rule('pattern = "/**"\nrender = "statik"'),
        "route_rules[0].render",
        'expected "static", got "statik" (did you mean "static"?)',
    ),
    (
        "root-without-render",
        rule('pattern = "/**"\nproxy = "django"\nroot = "public"'),
        "route_rules[0].root",
        'only applies to render = "static" rules',
    ),
    (
        "buffering-on-static",
        rule('pattern = "/**"\nrender = "static"\nrequest_buffering = false'),
        "route_rules[0].request_buffering",
        "only applies to proxy rules",
    ),
    (
        "index-with-slash",
        rule('pattern = "/**"\nrender = "static"\nindex = "a/index.html"'),
        "route_rules[0].index",
        "expected a file name",
    ),
    (
        "redirect-status",
        rule('pattern = "/**"\nredirect = { to = "/", status = 305 }'),
        "route_rules[0].redirect.status",
        "expected one of 301, 302, 303, 307, 308, got 305",
    ),
    (
        "redirect-placeholder",
        rule('pattern = "/**"\nredirect = { to = "https://{host}{path}" }'),
        "route_rules[0].redirect.to",
        'unknown placeholder "{host}" (known: {path}, {query})',
    ),
    (
        "redirect-placeholder-typo",
        rule('pattern = "/**"\nredirect = { to = "https://example.com{pth}" }'),
        "route_rules[0].redirect.to",
        '(did you mean "{path}"?)',
    ),
    (
        "redirect-brace",
        rule('pattern = "/**"\nredirect = "https://example.com{path"'),
        "route_rules[0].redirect.to",
        'unmatched "{" or "}"',
    ),
    (
        "redirect-no-target",
        rule('pattern = "/**"\nredirect = { status = 301 }'),
        "route_rules[0].redirect.to",
        "missing",
    ),
    (
        "respond-status",
        rule('pattern = "/**"\nrespond = { status = 99 }'),
        "route_rules[0].respond.status",
        "between 100 and 599, got 99",
    ),
    (
        "respond-204-body",
        rule('pattern = "/**"\nrespond = { status = 204, body = "x" }'),
        "route_rules[0].respond.body",
        "a 204 response cannot have a body",
    ),
    (
        "respond-type",
        rule('pattern = "/**"\nrespond = "ok"'),
        "route_rules[0].respond",
        "expected a table",
    ),
    (
        "header-name",
        rule('pattern = "/**"\nproxy = "django"\nheaders = { "cache control" = "no-store" }'),
        'route_rules[0].headers."cache control"',
        '"cache control" is not a valid HTTP header name',
    ),
    (
        "header-cr",
        rule('pattern = "/**"\nproxy = "django"\nheaders = { "x-a" = "1\\r\\nSet-Cookie: a=b" }'),
        "route_rules[0].headers.x-a",
        "must not contain CR, LF or NUL",
    ),
    (
        "header-non-ascii",
        rule('pattern = "/**"\nproxy = "django"\nheaders = { "x-a" = "caf\u00e9" }'),
        "route_rules[0].headers.x-a",
        "must be printable ASCII",
    ),
    (
        "redirect-non-ascii",
        rule('pattern = "/**"\nredirect = "/caf\u00e9"'),
        "route_rules[0].redirect.to",
        "must be ASCII; percent-encode",
    ),
    (
        "header-managed",
        rule('pattern = "/**"\nproxy = "django"\nheaders = { "Content-Length" = "0" }'),
        "route_rules[0].headers.Content-Length",
        "is managed by bext",
    ),
    (
        "header-value-type",
        rule('pattern = "/**"\nproxy = "django"\nheaders = { "x-a" = 1 }'),
        "route_rules[0].headers.x-a",
        "expected a string, got 1 (an integer)",
    ),
    (
        "rules-not-array",
        '[route_rules]\npattern = "/**"',
        "route_rules",
        "expected an array of tables ([[route_rules]])",
    ),
    (
        "unreachable",
        DJANGO
        + '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/**"\nproxy = "django"\n'
        + '[[route_rules]]\npattern = "/healthz"\nrespond = 200\n'
        + '[[route_rules]]\npattern = "/admin/**"\nproxy = "django"\n',
        "route_rules[4]",
        'unreachable, route_rules[2] ("/**") already matches everything',
    ),
    (
        "unreachable-same-host",
        rule('host = "a.example.com"\npattern = "/**"\nproxy = "django"')
        + '[[route_rules]]\nhost = "a.example.com"\npattern = "/x"\nrespond = 200\n',
        "route_rules[1]",
        'unreachable, route_rules[0] ("/**" on a.example.com) already matches everything',
    ),
    (
        "cache-size",
        '[cache]\nmax_size = "4MB"\nmax_object_size = "5MB"',
        "cache.max_object_size",
        "must not exceed cache.max_size (4MiB)",
    ),
    (
        "cache-rule-static",
        '[[route_rules]]\npattern = "/static/**"\nrender = "static"\ncache = true',
        "route_rules[0].cache",
        "only applies to proxy rules",
    ),
    ("cache-lock", '[cache]\nlock_timeout = "soon"', "cache.lock_timeout", "expected a duration"),
    ("cache-ttl", '[cache]\ndefault_ttl = "forever"', "cache.default_ttl", "expected a duration"),
    (
        "cache-enabled-type",
        '[cache]\nenabled = "yes"',
        "cache.enabled",
        'expected true or false, got "yes"',
    ),
    ("waf-paranoia", "[waf]\nparanoia = 5", "waf.paranoia", "between 1 and 4, got 5"),
    ("waf-mode", '[waf]\nmode = "blocking"', "waf.mode", 'expected one of "block", "detect"'),
    ("log-level", '[log]\nlevel = "verbose"', "log.level", 'expected one of "debug", "info"'),
    ("log-error-stdout", '[log]\nerror = "stdout"', "log.error", 'use "stderr" or a file path'),
    ("log-format", '[log]\naccess_format = "jsn"', "log.access_format", '(did you mean "json"?)'),
    (
        "h2-streams-zero",
        "[server.http2]\nmax_concurrent_streams = 0",
        "server.http2.max_concurrent_streams",
        "must be between 1 and 10000, got 0",
    ),
    (
        "h2-window-above-rfc",
        '[server.http2]\ninitial_window_size = "4GB"',
        "server.http2.initial_window_size",
        "must be between 64KiB and 1GiB, got 4GiB",
    ),
    (
        "h2-window-below-default",
        '[server.http2]\ninitial_window_size = "16KB"',
        "server.http2.initial_window_size",
        "must be between 64KiB and 1GiB, got 16KiB",
    ),
    (
        "h2-connection-below-stream",
        '[server.http2]\ninitial_window_size = "1MB"\nconnection_window = "512KB"',
        "server.http2.connection_window",
        "must be at least initial_window_size (1MiB), got 512KiB",
    ),
    ("h2-typo", "[server.http2]\nmax_streams = 10", "server.http2.max_streams", "unknown key"),
    (
        "h3-retry-type",
        '[server.http3]\nretry = "no"',
        "server.http3.retry",
        "expected true or false",
    ),
    (
        "h3-stream-window",
        '[server.http3]\nstream_window = "1KB"',
        "server.http3.stream_window",
        "must be between 16KiB and 1GiB, got 1KiB",
    ),
]


@pytest.mark.parametrize(
    ("toml", "path", "reason"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config(problems: Problems, toml: str, path: str, reason: str) -> None:
    found = problems(toml)
    matching = [p for p in found if p.split(": ", 1)[0] == path and reason in p.split(": ", 1)[1]]
    assert matching, f"no problem at {path!r} containing {reason!r} in {found!r}"


def test_enough_distinct_bad_configs() -> None:
    assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS) >= 25


def test_error_text_is_prefixed_by_source(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        DJANGO
        + '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
        + '[[route_rules]]\npattern = "/**"\nproxy = "djnago"\n'
    )
    monkeypatch.chdir(path.parent)
    with pytest.raises(ConfigError) as info:
        load_config(Path("bext.config.toml"))
    assert info.value.source == "bext.config.toml"
    assert str(info.value) == (
        "bext.config.toml: route_rules[2].proxy: "
        'no upstream named "djnago" (did you mean "django"?)'
    )


def test_all_problems_reported_at_once(problems: Problems) -> None:
    found = problems(
        """
        [server]
        prot = 3000
        workers = "many"
        header_timeout = "30 seconds"

        [upstreams.django]
        servers = ["https://127.0.0.1:8000"]

        [[route_rules]]
        pattern = "/a**"
        proxy = "djnago"

        [[route_rules]]
        pattern = "/**"

        [waf]
        paranoia = 9
        """
    )
    assert sorted(p.split(":", 1)[0] for p in found) == sorted(
        [
            "server.prot",
            "server.workers",
            "server.header_timeout",
            "upstreams.django.servers[0]",
            "route_rules[0].pattern",
            "route_rules[0].proxy",
            "route_rules[1]",
            "waf.paranoia",
        ]
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.problems == ["no such file"]
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_toml_syntax_error_has_line_and_column(write_config: Callable[[str], Path]) -> None:
    path = write_config("[server]\nport = 3000\nhost = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith("line 3, column 8: invalid TOML:")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bext.config.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_parse_config_source_defaults_to_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"port": -1}}, base_dir=tmp_path)
    assert str(info.value).startswith("<string>: server.port: must be between 0 and 65535")


def test_unknown_keys_everywhere_get_suggestions(problems: Problems) -> None:
    found = problems(
        """
        [upstreams.django]
        keepalve = 4
        servers = ["http://127.0.0.1:8000"]
        [upstreams.django.health]
        intervall = "5s"
        [[route_rules]]
        pattern = "/**"
        proxy = "django"
        header = { "x-a" = "1" }
        [cache]
        max_memmory = "1GB"
        """
    )
    assert 'upstreams.django.keepalve: unknown key (did you mean "keepalive"?)' in found
    assert 'upstreams.django.health.intervall: unknown key (did you mean "interval"?)' in found
    assert 'route_rules[0].header: unknown key (did you mean "headers"?)' in found
    assert 'cache.max_memmory: unknown key (did you mean "max_memory"?)' in found
