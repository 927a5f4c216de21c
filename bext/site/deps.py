"""Dependency names a project declares: requirements*.txt, pyproject.toml, Pipfile."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_REQ_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503: ``Django`` / ``django_rest`` / ``django.rest`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str | None:
    """``uvicorn[standard]>=0.30 ; python_version>"3"`` -> ``uvicorn``."""
    match = _REQ_NAME.match(spec)
    return normalize(match.group(1)) if match else None


def parse_requirements(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        name = requirement_name(line)
        if name:
            names.add(name)
    return names


def _keys(table: Any) -> Iterable[str]:
    return table.keys() if isinstance(table, dict) else ()


def parse_pyproject(text: str) -> set[str]:
    data = tomllib.loads(text)
    names: set[str] = set()
    project = data.get("project", {})
    for spec in project.get("dependencies", []) if isinstance(project, dict) else []:
        if isinstance(spec, str) and (name := requirement_name(spec)):
            names.add(name)
    poetry = data.get("tool", {}).get("poetry", {})
    if isinstance(poetry, dict):
        names.update(normalize(k) for k in _keys(poetry.get("dependencies")))
        for group in _keys(poetry.get("group")):
            names.update(normalize(k) for k in _keys(poetry["group"][group].get("dependencies")))
    return names - {"python"}


def parse_pipfile(text: str) -> set[str]:
    data = tomllib.loads(text)
    return {normalize(k) for k in _keys(data.get("packages"))}


def dependency_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("requirements*.txt"))
    files += sorted(folder.glob("requirements/*.txt"))
    files += [folder / n for n in ("pyproject.toml", "Pipfile") if (folder / n).is_file()]
    return [f for f in files if f.is_file()]


def read_dependencies(folders: Iterable[Path]) -> tuple[set[str], list[Path]]:
    """Names declared in the folders' dependency files, and the files that were read.

    A file that cannot be read or parsed is skipped (detection goes on without it).
    """
    names: set[str] = set()
    read: list[Path] = []
    for folder in dict.fromkeys(folders):
        for path in dependency_files(folder):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
                if path.name == "pyproject.toml":
                    names |= parse_pyproject(text)
                elif path.name == "Pipfile":
                    names |= parse_pipfile(text)
                else:
                    names |= parse_requirements(text)
            except (OSError, tomllib.TOMLDecodeError, AttributeError, TypeError):
                continue
            read.append(path)
    return names, read
