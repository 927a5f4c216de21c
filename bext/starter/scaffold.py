"""Write a new project from a template shipped as package data.

A template is a folder ``bext/templates/<name>/`` holding ``template.toml`` (its
description) and the project's files, each ending in ``.tmpl``. In paths and contents,
``{{project_name}}``, ``{{package}}``, ``{{project_dir}}`` and ``{{secret_key}}`` are
replaced (nothing else: Django's own ``{{ var }}`` tags pass through untouched); a folder
named ``__package__`` becomes the Python package and ``_gitignore`` becomes ``.gitignore``.

The project is rendered into a temporary folder beside the target and renamed into place
at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import keyword
import os
import re
import secrets
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

TEMPLATE_SCOPE = "@bext/"
DEFAULT_TEMPLATE = "@bext/starter-django"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_RENAMES = {"__package__": "{{package}}", "_gitignore": ".gitignore"}


class ScaffoldError(Exception):
    """A refused ``bext new``; nothing was written."""


@dataclass(frozen=True)
class Template:
    name: str
    """As the user types it: ``@bext/starter-django``."""
    description: str
    root: Traversable


def _templates_root() -> Traversable:
    return resources.files("bext") / "templates"


def list_templates() -> list[Template]:
    found = []
    for entry in _templates_root().iterdir():
        meta = entry / "template.toml"
        if not entry.is_dir() or not meta.is_file():
            continue
        data = tomllib.loads(meta.read_text(encoding="utf-8"))
        name = str(data.get("name", TEMPLATE_SCOPE + entry.name))
        found.append(Template(name, str(data.get("description", "")), entry))
    return sorted(found, key=lambda t: t.name)


def find_template(name: str) -> Template:
    """``@bext/starter-django`` or just ``starter-django``."""
    templates = list_templates()
    wanted = name if name.startswith("@") else TEMPLATE_SCOPE + name
    for template in templates:
        if template.name == wanted:
            return template
    known = ", ".join(t.name for t in templates) or "none"
    raise ScaffoldError(f"unknown template {name!r}; known templates: {known}")


def package_name(name: str) -> str:
    """The Python package for a project directory name: ``my-app`` -> ``my_app``."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"invalid project name {name!r}: use letters, digits, '_' and '-', starting with "
            "a letter (e.g. my-app; the Python package is then my_app)"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or package in _RESERVED:
        raise ScaffoldError(
            f"invalid project name {name!r}: the package {package!r} would clash with "
            "Python or Django; choose another name"
        )
    return package


# Names that would shadow a module the project imports.
_RESERVED = frozenset({"django", "test", "site", "bext", "gunicorn", "uvicorn", "asgiref"})


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _render_tree(source: Traversable, dest: Path, values: dict[str, str]) -> list[Path]:
    written: list[Path] = []
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        stem = entry.name.removesuffix(".tmpl")
        target = dest / _substitute(_RENAMES.get(stem, stem), values)
        if entry.is_dir():
            target.mkdir()
            written += _render_tree(entry, target, values)
        elif entry.name.endswith(".tmpl"):
            target.write_text(_substitute(entry.read_text(encoding="utf-8"), values),
                              encoding="utf-8")  # fmt: skip
            if target.name == "manage.py":
                target.chmod(0o755)
            written.append(target)
    return written


def create_project(name: str, template_name: str = DEFAULT_TEMPLATE,
                   parent: Path | None = None) -> tuple[Path, list[Path]]:  # fmt: skip
    """Render ``template_name`` into ``parent/name``; returns the folder and its files.

    Raises `ScaffoldError` (before writing anything) for a bad name, an unknown template or
    a target that exists and is not an empty directory.
    """
    package = package_name(name)
    template = find_template(template_name)
    parent = (parent or Path.cwd()).absolute()
    target = parent / name
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise ScaffoldError(f"{target} exists and is not a directory")
        if any(target.iterdir()):
            raise ScaffoldError(f"{target} exists and is not empty")
    if not parent.is_dir():
        raise ScaffoldError(f"{parent} is not a directory")
    values = {
        "project_name": name,
        "package": package,
        "project_dir": str(target),
        "secret_key": secrets.token_urlsafe(48),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    try:
        files = _render_tree(template.root, staging, values)
        os.chmod(staging, 0o777 & ~_umask())
        if target.exists():
            target.rmdir()  # empty (checked above); rename needs it gone
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, [target / f.relative_to(staging) for f in files]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
