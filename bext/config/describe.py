"""Human-readable summaries of a loaded config, as `bext check` prints them.

A config that validates can still mean something other than what its author intended
(a static root defaulting to the wrong folder, a rule order that sends /static to
Django). Printing the routing table as bext understood it, with every default filled in,
makes those mistakes visible before the config goes live.
"""

from __future__ import annotations

from bext.config.schema import Config, RouteRule
from bext.master.listeners import Listener
from bext.runtime.spec import HTTP, HTTPS, QUIC

__all__ = ["config_notes", "describe_listeners", "describe_routes"]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _action(config: Config, rule: RouteRule) -> str:
    if rule.render is not None:
        return f"{rule.render} {rule.static_root(config.server.app_dir)}"
    if rule.proxy is not None:
        upstream = config.upstream(rule.proxy)
        servers = ", ".join(server.url for server in upstream.servers) if upstream else "?"
        return f"proxy {rule.proxy} ({servers})"
    if rule.respond is not None:
        mime = rule.respond.content_type.split(";", 1)[0].strip()
        size = _plural(len(rule.respond.body.encode()), "byte")
        return f"respond {rule.respond.status} ({mime}, {size})"
    if rule.redirect is not None:
        return f"redirect {rule.redirect.status} -> {rule.redirect.to}"
    return "?"


def describe_routes(config: Config) -> str:
    """The routing table, one aligned line per rule in match order.

    Columns: index, host (`*` for any), pattern, action with its resolved target, and the
    number of extra response headers the rule adds.
    """
    if not config.route_rules:
        return "(no route_rules)"
    rows = [
        (
            f"[{rule.index}]",
            rule.host or "*",
            rule.pattern,
            _action(config, rule),
            f"+{_plural(len(rule.headers), 'header')}" if rule.headers else "",
        )
        for rule in config.route_rules
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def describe_listeners(config: Config) -> str:
    """Where bext listens, e.g. `http://0.0.0.0:3000, http://[::]:3000`."""
    server = config.server
    kinds = [(HTTP, server.port)]
    if server.tls is not None:
        kinds.append((HTTPS, server.tls.port))
        if server.tls.http3:
            kinds.append((QUIC, server.tls.port))
    return ", ".join(Listener(host, port, kind).url for kind, port in kinds for host in server.host)


def config_notes(config: Config) -> list[str]:
    """What `bext check` should tell the operator besides "ok".

    The loader's warnings (`config.warnings`): legal but probably unintended, such as a
    duplicated rule.
    """
    notes: list[str] = []
    if config.waf.enabled and not any(rule.uses_waf(True) for rule in config.route_rules):
        notes.append(
            "waf: enabled, but no rule is inspected (proxy rules are by default; "
            "add waf = true to others)"
        )
    notes.extend(config.warnings)
    return notes
