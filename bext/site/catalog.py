"""The framework catalog: ``bext/catalog/frameworks.toml`` read into `FrameworkRule`s."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

KINDS = ("django", "app", "static")
APP_SERVERS = ("gunicorn", "uvicorn")


class CatalogError(Exception):
    """The shipped catalog is malformed (a packaging bug, reported as such)."""


@dataclass(frozen=True)
class FrameworkRule:
    name: str
    description: str
    kind: str
    files: tuple[str, ...] = ()
    any_files: tuple[str, ...] = ()
    search_depth: int = 0
    dependencies: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    app_server: str = "gunicorn"
    upstream: str = "app"
    type: str = "proxy"


def _strings(rule: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = rule.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def parse_catalog(text: str, source: str = "frameworks.toml") -> list[FrameworkRule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: {exc}") from None
    raw = data.get("framework")
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{source}: expected [[framework]] tables")
    rules = []
    for i, item in enumerate(raw):
        where = f"{source}: framework[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CatalogError(f"{where}: expected a table with name = ...")
        unknown = set(item) - set(FrameworkRule.__dataclass_fields__)
        if unknown:
            raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
        kind = item.get("kind")
        if kind not in KINDS:
            raise CatalogError(f"{where}.kind: expected one of {KINDS}, got {kind!r}")
        server = item.get("app_server", "gunicorn")
        if server not in APP_SERVERS:
            raise CatalogError(f"{where}.app_server: expected one of {APP_SERVERS}")
        depth = item.get("search_depth", 0)
        if not isinstance(depth, int) or not 0 <= depth <= 3:
            raise CatalogError(f"{where}.search_depth: expected 0 to 3")
        rules.append(
            FrameworkRule(
                name=item["name"],
                description=str(item.get("description", "")),
                kind=kind,
                files=_strings(item, "files", where),
                any_files=_strings(item, "any_files", where),
                search_depth=depth,
                dependencies=_strings(item, "dependencies", where),
                imports=_strings(item, "imports", where),
                app_server=server,
                upstream=str(item.get("upstream", "app")),
                type=str(item.get("type", "proxy")),
            )
        )
    return rules


def load_catalog() -> list[FrameworkRule]:
    """The rules shipped with bext, in order (first match wins)."""
    resource = resources.files("bext") / "catalog" / "frameworks.toml"
    return parse_catalog(resource.read_text(encoding="utf-8"), "bext/catalog/frameworks.toml")
