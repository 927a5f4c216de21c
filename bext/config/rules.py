"""Reader for `[[route_rules]]`, the `[limits.NAME]` they name, and the checks that span rules.

A rule is a URL pattern (plus an optional host) and exactly one action, and optionally a
rate limit (`limit = "NAME"`). Beyond each rule's own shape, this module checks what only
the whole list reveals: proxy targets that name no upstream, limits that name no
`[limits.NAME]` table, and rules that an earlier catch-all makes unreachable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from bext.config import values
from bext.config.errors import did_you_mean, quote
from bext.config.reader import (
    MISSING,
    Context,
    Table,
    checked,
    header_table,
    is_int,
    named_tables,
    show_value,
    string_list,
)
from bext.config.schema import (
    DEFAULT_CONTENT_TYPE,
    REDIRECT_STATUSES,
    LimitConfig,
    RedirectAction,
    RespondAction,
    RouteRule,
)

__all__ = ["read_limits", "read_rules"]

_ACTIONS = ("render", "proxy", "respond", "redirect")
_STATIC_ONLY = ("root", "index", "allow_symlinks")
_PROXY_ONLY = ("request_buffering", "response_buffering", "cache", "cache_set_cookie")


def read_rules(
    ctx: Context,
    root: Table,
    app_dir: Path,
    upstream_names: Sequence[str],
    limit_names: Sequence[str] = (),
) -> tuple[RouteRule, ...]:
    """`[[route_rules]]`, in file order, which is match order; then the reachability check."""
    raw = root.take("route_rules")
    if raw is MISSING:
        return ()
    if not isinstance(raw, list):
        ctx.error(
            "route_rules", f"expected an array of tables ([[route_rules]]), got {show_value(raw)}"
        )
        return ()
    rules: list[RouteRule] = []
    for i, item in enumerate(raw):
        path = f"route_rules[{i}]"
        if not isinstance(item, dict):
            ctx.error(path, f"expected a table, got {show_value(item)}")
            continue
        rule = _read_rule(ctx, Table(ctx, path, item), i, app_dir, upstream_names, limit_names)
        if rule is not None:
            rules.append(rule)
    _check_reachability(ctx, rules)
    return tuple(rules)


def _read_rule(
    ctx: Context,
    t: Table,
    index: int,
    app_dir: Path,
    upstream_names: Sequence[str],
    limit_names: Sequence[str],
) -> RouteRule | None:
    """Read one rule; None when its pattern is unusable (so later checks skip it)."""
    raw_pattern = t.take("pattern")
    pattern = None
    if raw_pattern is MISSING:
        ctx.error(t.sub("pattern"), 'missing; every rule needs a URL pattern such as "/**"')
    elif ctx.expect(t.sub("pattern"), raw_pattern, "str"):
        pattern = checked(ctx, t.sub("pattern"), values.check_pattern, raw_pattern)

    host = t.get_opt_str("host")
    if host is not None:
        host = checked(ctx, t.sub("host"), values.check_host_pattern, host)

    render = t.get_opt_str("render")
    if render is not None and render != "static":
        ctx.error(
            t.sub("render"),
            f'expected "static", got {quote(render)}{did_you_mean(render, ["static"])}',
        )
        render = None
    root = t.get_path("root", app_dir)
    proxy = _read_reference(ctx, t, "proxy", upstream_names, "upstream", "upstreams")
    limit = _read_reference(ctx, t, "limit", limit_names, "limit", "limits")
    respond = _read_respond(ctx, t)
    redirect = _read_redirect(ctx, t)
    headers = header_table(
        t, "headers", values.check_header_name, '{ "cache-control" = "no-store" }'
    )
    index_file = t.get_opt_str("index")
    if index_file is not None and (
        not index_file or "/" in index_file or "\0" in index_file or index_file in (".", "..")
    ):
        ctx.error(
            t.sub("index"), f'expected a file name such as "index.html", got {quote(index_file)}'
        )
        index_file = None
    request_buffering = t.get_bool("request_buffering", True)
    response_buffering = t.get_bool("response_buffering", True)
    allow_symlinks = t.get_bool("allow_symlinks", False)
    cache = t.get_bool("cache", True) if t.has("cache") else None
    cache_set_cookie = t.get_bool("cache_set_cookie", False)
    waf = t.get_bool("waf", True) if t.has("waf") else None
    allow = _read_networks(ctx, t, "allow")
    deny = _read_networks(ctx, t, "deny")
    methods = _read_methods(ctx, t)
    max_body_size = t.get_size("max_body_size", 0, lo=0) if t.has("max_body_size") else None
    t.finish()

    present = [action for action in _ACTIONS if t.has(action)]
    if len(present) != 1:
        reason = "a rule needs exactly one of render, proxy, respond, redirect"
        if present:
            reason += f"; it has {', '.join(present)}"
        ctx.error(t.path, reason)
    for key in _STATIC_ONLY:
        if t.has(key) and "render" not in present:
            ctx.error(t.sub(key), 'only applies to render = "static" rules')
    for key in _PROXY_ONLY:
        if t.has(key) and "proxy" not in present:
            ctx.error(t.sub(key), "only applies to proxy rules")

    if pattern is None:
        return None
    return RouteRule(
        index=index,
        pattern=pattern,
        host=host,
        render=render,
        root=root,
        proxy=proxy,
        respond=respond,
        redirect=redirect,
        headers=headers,
        index_file=index_file,
        request_buffering=request_buffering,
        response_buffering=response_buffering,
        allow_symlinks=allow_symlinks,
        limit=limit,
        cache=cache,
        cache_set_cookie=cache_set_cookie,
        waf=waf,
        allow=allow,
        deny=deny,
        methods=methods,
        max_body_size=max_body_size,
    )


def _read_networks(ctx: Context, t: Table, key: str) -> tuple[str, ...]:
    """`allow` / `deny`: addresses or CIDRs (a string or an array), normalised."""
    raw = t.take(key)
    if raw is MISSING:
        return ()
    networks: list[str] = []
    for path, text in string_list(ctx, t.sub(key), raw):
        network = checked(ctx, path, values.check_network, text)
        if network is not None and network not in networks:
            networks.append(network)
    return tuple(networks)


def _read_methods(ctx: Context, t: Table) -> tuple[str, ...]:
    """`methods`: request methods (upper-case tokens such as "GET"), HEAD with GET."""
    raw = t.take("methods")
    if raw is MISSING:
        return ()
    methods: list[str] = []
    for path, text in string_list(ctx, t.sub("methods"), raw):
        if not re.fullmatch(r"[A-Z][A-Z0-9_-]*", text):
            ctx.error(path, f'expected an upper-case method such as "GET", got {quote(text)}')
        elif text not in methods:
            methods.append(text)
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")  # as nginx's limit_except GET does
    return tuple(methods)


def _read_reference(
    ctx: Context, t: Table, key: str, names: Sequence[str], noun: str, section: str
) -> str | None:
    """`key`: the name of a `[SECTION.NAME]` table; one not among `names` is reported
    (and still returned, so later checks see the rule as written)."""
    name = t.get_opt_str(key)
    if name is not None and name not in names:
        if names:
            hint = did_you_mean(name, names)
        else:
            hint = f" (no [{section}.NAME] sections are defined)"
        ctx.error(t.sub(key), f"no {noun} named {quote(name)}{hint}")
    return name


def _read_respond(ctx: Context, rule: Table) -> RespondAction | None:
    """`respond = { status, body, content_type }`, or just a status: `respond = 204`."""
    raw = rule.take("respond")
    path = rule.sub("respond")
    if raw is MISSING:
        return None
    if is_int(raw):
        raw = {"status": raw}
    if not isinstance(raw, dict):
        ctx.error(
            path, f'expected a table such as {{ status = 200, body = "ok" }}, got {show_value(raw)}'
        )
        return None
    t = Table(ctx, path, raw)
    status = t.get_int("status", 200, lo=100, hi=599)
    body = t.get_str("body", "")
    content_type = t.get_str("content_type", DEFAULT_CONTENT_TYPE)
    t.finish()
    if body and (status < 200 or status in (204, 304)):
        ctx.error(t.sub("body"), f"a {status} response cannot have a body")
    if not content_type:
        ctx.error(t.sub("content_type"), "must not be empty")
    else:
        checked(ctx, t.sub("content_type"), values.check_header_value, content_type)
    return RespondAction(status=status, body=body, content_type=content_type)


def _read_redirect(ctx: Context, rule: Table) -> RedirectAction | None:
    """`redirect = { to = "https://example.com{path}", status = 301 }`, or just the target."""
    raw = rule.take("redirect")
    path = rule.sub("redirect")
    if raw is MISSING:
        return None
    if isinstance(raw, str):
        raw = {"to": raw}
    if not isinstance(raw, dict):
        ctx.error(
            path,
            f'expected a table such as {{ to = "https://example.com{{path}}", status = 301 }}, '
            f"got {show_value(raw)}",
        )
        return None
    t = Table(ctx, path, raw)
    to = t.get_opt_str("to")
    if to is None and not t.has("to"):
        ctx.error(t.sub("to"), "missing; where should the client go?")
    if to is not None:
        to = checked(ctx, t.sub("to"), values.check_redirect_target, to)
    status = t.get_int("status", 302)
    if status not in REDIRECT_STATUSES:
        options = ", ".join(str(code) for code in REDIRECT_STATUSES)
        ctx.error(t.sub("status"), f"expected one of {options}, got {status}")
    t.finish()
    return RedirectAction(to=to or "/", status=status)


def _check_reachability(ctx: Context, rules: Iterable[RouteRule]) -> None:
    """Refuse rules that can never match because an earlier "/**" takes every request.

    Rules are tried in file order, so a catch-all shadows every later rule on the same host
    (a catch-all without `host` shadows every later rule). That is always a mistake, and
    one that otherwise shows up only as "my static files are served by Django".
    """
    catch_alls: list[RouteRule] = []
    seen: dict[tuple[str | None, str], int] = {}
    for rule in rules:
        shadow = next((c for c in catch_alls if c.host is None or c.host == rule.host), None)
        if shadow is not None:
            where = "" if shadow.host is None else f" on {shadow.host}"
            ctx.error(
                f"route_rules[{rule.index}]",
                f"unreachable, route_rules[{shadow.index}] ({quote(shadow.pattern)}{where}) "
                "already matches everything",
            )
            continue
        key = (rule.host, rule.pattern)
        if key in seen:
            ctx.warn(
                f"route_rules[{rule.index}]",
                f"same host and pattern as route_rules[{seen[key]}], which is tried first; "
                "this rule never matches",
            )
        else:
            seen[key] = rule.index
        if rule.pattern == "/**":
            catch_alls.append(rule)


# -- [limits.NAME] ------------------------------------------------------------------------

_RATE_RE = re.compile(r"\s*(\d+)\s*r?\s*/\s*([A-Za-z]+)\s*")
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0}  # fmt: skip
_MAX_REQUESTS = 1_000_000
_MAX_BURST = 1_000_000
_HEADER_KEY = "header:"
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def read_limits(ctx: Context, t: Table) -> tuple[LimitConfig, ...]:
    """`[limits.NAME]` tables, in file order: named request rates for route rules."""
    result: list[LimitConfig] = []
    for name, table in named_tables(t, "limit", skip_bad_names=True):
        limit = _read_limit(ctx, table, name)
        if limit is not None:
            result.append(limit)
    return tuple(result)


def _read_limit(ctx: Context, t: Table, name: str) -> LimitConfig | None:
    raw_rate = t.take("rate")
    requests, period = 0, 1.0
    if raw_rate is MISSING:
        ctx.error(t.sub("rate"), 'missing; how many requests, such as rate = "5/s" or "300/m"')
    elif ctx.expect(t.sub("rate"), raw_rate, "str"):
        parsed = _parse_rate(raw_rate)
        if parsed is None:
            ctx.error(
                t.sub("rate"),
                f'expected requests per second, minute or hour such as "5/s", "300/m" or '
                f'"1000/h" (at most {_MAX_REQUESTS:,} per period), got {quote(raw_rate)}',
            )
        else:
            requests, period = parsed
    burst = t.get_int("burst", 0, lo=0, hi=_MAX_BURST)
    key = _read_limit_key(ctx, t)
    t.finish()
    if not requests or key is None:
        return None
    return LimitConfig(name=name, requests=requests, period=period, burst=burst, key=key)


def _parse_rate(text: str) -> tuple[int, float] | None:
    match = _RATE_RE.fullmatch(text)
    if match is None:
        return None
    requests = int(match.group(1))
    period = _PERIODS.get(match.group(2).lower())
    if period is None or not 1 <= requests <= _MAX_REQUESTS:
        return None
    return requests, period


def _read_limit_key(ctx: Context, t: Table) -> str | None:
    """`key = "client_ip"` (the default) or `"header:X-Api-Key"` (stored lowercased)."""
    key = t.get_str("key", "client_ip")
    if key == "client_ip":
        return key
    if key[: len(_HEADER_KEY)].lower() == _HEADER_KEY:
        header = key[len(_HEADER_KEY) :].strip()
        if _TOKEN_RE.fullmatch(header):
            return _HEADER_KEY + header.lower()
        ctx.error(t.sub("key"), f"{quote(header)} is not a valid HTTP header name")
        return None
    ctx.error(
        t.sub("key"),
        f'expected "client_ip" or "header:NAME" (such as "header:X-Api-Key"), got {quote(key)}'
        f"{did_you_mean(key, ['client_ip'])}",
    )
    return None
