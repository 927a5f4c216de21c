"""Read `bext.config.toml` into a validated `Config`, or refuse it with every problem found.

Reading walks the TOML tables (`reader.Table`: key paths, type checks, unknown keys with
suggestions) through one reader per section (`sections.py`, `rules.py`). A problem never
stops the walk: it is recorded, the default substituted, and the walk carries on, so one
run of `bext check` lists everything. Cross-checks (proxy targets, unreachable rules) run
once the tables they need have been read.

Relative paths resolve as follows (no path is ever taken from the process's working
directory, so `bext` behaves the same whichever folder systemd or a shell starts it in):

* `server.app_dir` against the folder holding the config file;
* `route_rules[].root` against `server.app_dir` (static files belong to the app);
* `log.access` / `log.error` files, `server.pidfile`, `server.control_socket`, TLS
  certificate and key files, and `unix:` upstream sockets against the config file's folder
  (they belong to the deployment, not the app).

For `parse_config`, "the config file's folder" is its `base_dir` argument. "~" is expanded;
symlinks are kept as written (see `values.resolve_path`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bext.config.errors import ConfigError
from bext.config.reader import Context, Table
from bext.config.rules import read_limits, read_rules
from bext.config.schema import Config
from bext.config.sections import (
    read_admin,
    read_cache,
    read_compression,
    read_framework,
    read_log,
    read_metrics,
    read_server,
    read_static,
    read_upstreams,
    read_waf,
)

__all__ = ["DEFAULT_CONFIG_PATH", "load_config", "parse_config"]

DEFAULT_CONFIG_PATH = Path("bext.config.toml")

_TOML_POSITION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_config(data: Mapping[str, Any], *, base_dir: Path, source: str = "<string>") -> Config:
    """Validate already-parsed TOML data (as from `tomllib.loads`) into a `Config`.

    `base_dir` plays the part of the config file's folder for relative paths. Raises
    `ConfigError` listing every problem found; `source` prefixes its lines.
    """
    base_dir = Path(os.path.normpath(base_dir.expanduser().absolute()))
    ctx = Context(base_dir)
    root = Table(ctx, "", data)

    server = read_server(ctx, root.get_table("server"))
    framework = read_framework(root.get_table("framework"))
    upstreams = read_upstreams(ctx, root.get_table("upstreams", hint=" of [upstreams.NAME]"))
    names = [upstream.name for upstream in upstreams]
    limit_table = root.get_table("limits", hint=" of [limits.NAME]")
    limits = read_limits(ctx, limit_table)
    rules = read_rules(ctx, root, server.app_dir, names, list(limit_table.raw))
    cache = read_cache(ctx, root.get_table("cache"))
    static = read_static(root.get_table("static"))
    compression = read_compression(ctx, root.get_table("compression"))
    waf = read_waf(ctx, root.get_table("waf"))
    log = read_log(ctx, root.get_table("log"))
    admin = read_admin(ctx, root.get_table("admin"))
    metrics = read_metrics(ctx, root.get_table("metrics"))
    root.finish("section")

    if ctx.problems:
        raise ConfigError(ctx.problems, source)

    used = {rule.proxy for rule in rules}
    for upstream in upstreams:
        if upstream.name not in used:
            ctx.warn(f"upstreams.{upstream.name}", "defined, but no route rule proxies to it")
    named = {rule.limit for rule in rules}
    for limit in limits:
        if limit.name not in named:
            ctx.warn(f"limits.{limit.name}", "defined, but no route rule names it (limit = ...)")

    return Config(
        source=None,
        base_dir=base_dir,
        server=server,
        framework=framework,
        upstreams=upstreams,
        route_rules=rules,
        cache=cache,
        static=static,
        compression=compression,
        waf=waf,
        log=log,
        admin=admin,
        metrics=metrics,
        limits=limits,
        warnings=tuple(ctx.warnings),
    )


def load_config(path: Path) -> Config:
    """Read and validate a config file; relative paths resolve against its folder.

    Raises `ConfigError` (with `source` = the path as given) for a missing or unreadable
    file, invalid TOML (with its line and column) and every validation problem.
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(["no such file"], source) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, expected a TOML file"], source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not valid UTF-8 (byte offset {exc.start})"], source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(str(exc))], source) from None
    absolute = Path(os.path.normpath(path.expanduser().absolute()))
    config = parse_config(raw, base_dir=absolute.parent, source=source)
    return replace(config, source=absolute)


def _toml_problem(message: str) -> str:
    """Reword tomllib's "Invalid value (at line 3, column 8)" as "line 3, column 8: ..."."""
    match = _TOML_POSITION_RE.search(message)
    if match is None:
        return f"invalid TOML: {message}"
    reason = message[: match.start()]
    return f"line {match.group(1)}, column {match.group(2)}: invalid TOML: {reason}"
