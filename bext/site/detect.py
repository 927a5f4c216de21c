"""Apply the framework catalog to a project folder.

Only reads files (never imports or runs the project's code) and returns a `Detection`
saying which rule fired, why, the files read, and what to serve; `render` turns it into a
configuration. `DetectError` means nothing usable was found (or too much: two projects).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from bext.config import DEFAULT_CONFIG_PATH
from bext.site.appserver import SKIP_DIRS, AppServer, find_app_server
from bext.site.catalog import FrameworkRule, load_catalog
from bext.site.deps import normalize, read_dependencies
from bext.site.django_settings import DjangoSettings, read_settings

STATIC_SITE_INDEX = "index.html"
_MAX_PY_FILES = 300


class DetectError(Exception):
    """No framework found, or an ambiguous tree; the message says what was looked at."""


@dataclass(frozen=True)
class Mount:
    """A ``render = "static"`` rule: URL pattern -> folder."""

    pattern: str
    root: Path
    index: str | None = None
    why: str = ""


@dataclass
class Detection:
    root: Path
    rule: FrameworkRule
    app_dir: Path
    reasons: list[str] = field(default_factory=list)
    files_read: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    app_server: AppServer | None = None
    django: DjangoSettings | None = None

    def read(self, *paths: Path) -> None:
        for path in paths:
            if path not in self.files_read:
                self.files_read.append(path)


def _subdirs(root: Path, depth: int) -> list[tuple[int, Path]]:
    """(level, folder) for root and its folders down to ``depth``, skipping venvs etc."""
    found = [(0, root)]
    frontier = [root]
    for level in range(1, depth + 1):
        nxt = []
        for folder in frontier:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if (entry.is_dir() and not entry.is_symlink() and entry.name not in SKIP_DIRS
                        and not entry.name.startswith(".")):  # fmt: skip
                    nxt.append(entry)
                    found.append((level, entry))
        frontier = nxt
    return found


def _imported_modules(folders: list[Path]) -> dict[str, Path]:
    """Top-level modules imported by the folders' .py files (one package down too)."""
    modules: dict[str, Path] = {}
    files: list[Path] = []
    for folder in dict.fromkeys(folders):
        files += sorted(folder.glob("*.py")) + sorted(folder.glob("*/*.py"))
    for path in files[:_MAX_PY_FILES]:
        if any(part in SKIP_DIRS for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    modules.setdefault(alias.name.split(".")[0], path)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.setdefault(node.module.split(".")[0], path)
    return modules


def _between(root: Path, folder: Path) -> list[Path]:
    """root, ..., folder: where dependency files of a project in ``folder`` may be."""
    chain = [folder]
    while chain[-1] != root and root in chain[-1].parents:
        chain.append(chain[-1].parent)
    return list(reversed(chain))


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` for messages (``.`` for root itself), else as is."""
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _try_rule(rule: FrameworkRule, root: Path, misses: list[str]) -> Detection | None:
    # Files: all of `files` in one folder (root or search_depth below); one of `any_files`.
    if rule.files:
        levels = [(level, d) for level, d in _subdirs(root, rule.search_depth)
                  if all((d / f).is_file() for f in rule.files)]  # fmt: skip
        if not levels:
            return None
        files_where = levels
    else:
        files_where = [(0, root)]
    site_index: Path | None = None
    if rule.any_files:
        site_index = next((root / f for f in rule.any_files if (root / f).is_file()), None)
        if site_index is None:
            return None

    fired: list[tuple[int, Path, list[str], list[Path]]] = []
    for level, folder in files_where:
        reasons = [f"{rel(folder / f, root)} exists" for f in rule.files]
        if site_index is not None:
            reasons.append(f"{rel(site_index, root)} exists")
        read: list[Path] = []
        if rule.dependencies or rule.imports:
            names, dep_files = read_dependencies(_between(root, folder))
            read += dep_files
            wanted = [d for d in rule.dependencies if normalize(d) in names]
            if wanted:
                where = ", ".join(rel(p, root) for p in dep_files)
                reasons.append(f"{wanted[0]} is listed in {where}")
            elif rule.imports:
                modules = _imported_modules(_between(root, folder))
                hit = next((m for m in rule.imports if m in modules), None)
                if hit is None:
                    if rule.files:
                        misses.append(_miss(rule, folder, root, dep_files))
                    continue
                reasons.append(f"{rel(modules[hit], root)} imports {hit}")
                read.append(modules[hit])
            else:
                misses.append(_miss(rule, folder, root, dep_files))
                continue
        fired.append((level, folder, reasons, read))
    if not fired:
        return None
    best = min(level for level, *_ in fired)
    top = [f for f in fired if f[0] == best]
    if len(top) > 1:
        places = ", ".join(rel(folder, root) for _, folder, *_ in top)
        raise DetectError(
            f"ambiguous: the {rule.name} rule matches {len(top)} projects ({places}); run "
            f"`bext site autoconfigure FOLDER` on the one bext should serve"
        )
    _, folder, reasons, read = top[0]
    detection = Detection(root=root, rule=rule, app_dir=folder, reasons=reasons)
    detection.read(*[folder / f for f in rule.files], *read)
    if site_index is not None:
        detection.read(site_index)
    return detection


def _miss(rule: FrameworkRule, folder: Path, root: Path, dep_files: list[Path]) -> str:
    files = ", ".join(rel(folder / f, root) for f in rule.files)
    looked = ", ".join(rel(p, root) for p in dep_files) or "no dependency files found"
    deps = " or ".join(rule.dependencies) or "?"
    return f"{rule.name}: {files} exists but {deps} is not listed ({looked})"


def detect(root: Path, rules: list[FrameworkRule] | None = None) -> Detection:
    """Which catalog rule fires first for the project in ``root``, with the details."""
    root = root.absolute()
    if not root.is_dir():
        raise DetectError(f"{root} is not a directory")
    if not any(p.name != DEFAULT_CONFIG_PATH.name for p in root.iterdir()):
        raise DetectError(f"{root} is empty: nothing to configure")
    rules = load_catalog() if rules is None else rules
    misses: list[str] = []
    for rule in rules:
        detection = _try_rule(rule, root, misses)
        if detection is None:
            continue
        if rule.kind == "django":
            _complete_django(detection)
        elif rule.kind == "app":
            _complete_app(detection)
        else:
            _complete_static(detection)
        return detection
    names = ", ".join(r.name for r in rules)
    detail = "".join(f"\n  {m}" for m in misses)
    raise DetectError(f"no framework detected in {root} (rules tried: {names}){detail}")


def _complete_app_server(d: Detection) -> None:
    names, _ = read_dependencies(_between(d.root, d.app_dir))
    server, read = find_app_server(d.root, d.app_dir, names, d.rule.app_server)
    d.read(*read)
    d.app_server = server
    d.reasons.append(f"app server: {server.reason}")
    if server.max_conns_reason:
        d.reasons.append(server.max_conns_reason)


def _complete_django(d: Detection) -> None:
    settings = read_settings(d.app_dir)
    d.django = settings
    d.read(*settings.files_read)
    if settings.module:
        d.reasons.append(f"settings module {settings.module} (from manage.py)")
    d.notes += settings.notes
    values = settings.values
    static_url = str(values.get("STATIC_URL", "/static/"))
    static_root = values.get("STATIC_ROOT")
    if "STATIC_URL" not in values:
        d.notes.append("STATIC_URL not found in the settings; assuming /static/")
    if static_root is None:
        static_root = d.app_dir / "staticfiles"
        d.notes.append(
            "STATIC_ROOT not found in the settings (collectstatic needs it); assuming "
            f'{rel(static_root, d.root)}: set STATIC_ROOT = BASE_DIR / "staticfiles"'
        )
    _add_mount(d, "STATIC", static_url, Path(static_root))
    media_root = values.get("MEDIA_ROOT")
    if media_root is None:
        d.notes.append("MEDIA_ROOT not set: no /media/ rule (uploads stay with Django)")
    else:
        _add_mount(d, "MEDIA", str(values.get("MEDIA_URL", "/media/")), Path(media_root))
    if not settings.manifest_storage:
        d.notes.append(
            "no ManifestStaticFilesStorage in STORAGES: static file names are not hashed, "
            "so browsers revalidate them (bext sends immutable only for hashed names)"
        )
    _complete_app_server(d)


def _add_mount(d: Detection, kind: str, url: str, folder: Path) -> None:
    if url.startswith(("http://", "https://", "//")):
        d.notes.append(f"{kind}_URL is {url}: served elsewhere, no bext rule for it")
        return
    prefix = "/" + url.strip("/")
    if prefix == "/":
        d.notes.append(f"{kind}_URL is /: no static rule (it would hide the app)")
        return
    why = f"{kind}_URL {url!r}, {kind}_ROOT {rel(folder, d.root)}"
    d.mounts.append(Mount(prefix + "/**", folder, why=why))


def _complete_app(d: Detection) -> None:
    static = d.app_dir / "static"
    if not static.is_dir():
        static = next(
            (s for s in sorted(d.app_dir.glob("*/static"))
             if s.is_dir() and any(s.parent.glob("*.py"))),
            d.app_dir / "static",
        )  # fmt: skip
    if static.is_dir():
        d.mounts.append(Mount("/static/**", static, why=f"{rel(static, d.root)}/ exists"))
    else:
        d.notes.append("no static/ folder: everything goes to the app")
    _complete_app_server(d)


def _complete_static(d: Detection) -> None:
    index = next(p for p in d.files_read if p.name == STATIC_SITE_INDEX)
    d.app_dir = d.root
    d.mounts.append(Mount("/**", index.parent, index=STATIC_SITE_INDEX,
                          why=f"{rel(index, d.root)} exists"))  # fmt: skip
