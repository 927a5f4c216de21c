"""Read a Django project's static/media settings statically, with `ast`.

The user's code is never imported or executed: manage.py is searched for the
``DJANGO_SETTINGS_MODULE`` default, and the settings module's top-level assignments are
evaluated for the few expression shapes settings files use for paths:
``BASE_DIR = Path(__file__).resolve().parent.parent``, ``BASE_DIR / "staticfiles"``,
``os.path.join(BASE_DIR, "static")``, ``os.path.dirname(os.path.abspath(__file__))``,
``str(...)``, ``os.environ.get("X", "default")`` / ``os.getenv`` (the default is used), and
``from .base import *`` (followed). Anything else is "unknown".

``ALLOWED_HOSTS`` and ``DEBUG`` are read too, when written as literals (a list of strings, a
bool), for `bext check`'s hint about health probes the app would refuse.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SETTING_NAMES = ("STATIC_URL", "STATIC_ROOT", "MEDIA_URL", "MEDIA_ROOT")


@dataclass
class DjangoSettings:
    module: str | None = None
    values: dict[str, str | Path] = field(default_factory=dict)
    """The settings found: URLs as str, roots as absolute paths."""
    files_read: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest_storage: bool = False
    allowed_hosts: list[str] | None = None
    """``ALLOWED_HOSTS`` when the settings spell it as a literal list; None: unknown."""
    allowed_hosts_file: Path | None = None
    debug: bool | None = None
    """``DEBUG`` when it is a literal True/False; None: unknown (often from the env)."""


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def settings_module_from_manage(manage_py: Path) -> str | None:
    """The default in ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.settings")``."""
    tree = _parse(manage_py)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "DJANGO_SETTINGS_MODULE"
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            return node.args[1].value
    return None


def module_file(app_dir: Path, module: str) -> Path | None:
    """``x.settings`` -> ``app_dir/x/settings.py`` (or ``.../settings/__init__.py``)."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    base = app_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class _Evaluator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, str | Path] = {}

    def eval(self, node: ast.expr) -> str | Path | None:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return self.path
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self.eval(node.value)
            return inner.parent if isinstance(inner, Path) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(left, Path) and isinstance(right, str | Path):
                return left / right
            return None
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _call(self, node: ast.Call) -> str | Path | None:
        name = _dotted(node.func)
        args = [self.eval(a) for a in node.args]
        if name in ("Path", "pathlib.Path", "PurePath") and len(args) == 1:
            return Path(args[0]) if args[0] is not None else None
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("resolve", "absolute"):
            return self.eval(node.func.value)
        if name in ("os.path.abspath", "os.path.realpath", "os.path.normpath", "str") and args:
            return args[0]
        if name == "os.path.dirname" and len(args) == 1:
            value = args[0]
            return Path(value).parent if value is not None else None
        if name == "os.path.join" and args and None not in args:
            first, *rest = args
            assert first is not None
            return Path(first).joinpath(*[str(r) for r in rest])
        if name in ("os.environ.get", "os.getenv", "env", "env.str", "config") and len(args) >= 2:
            return args[1]
        if name in ("os.environ.get", "os.getenv", "config") and node.keywords:
            for kw in node.keywords:
                if kw.arg == "default":
                    return self.eval(kw.value)
        return None


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _mentions_manifest(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and "Manifest" in n.value
        for n in ast.walk(node)
    )


def _changed_elsewhere(tree: ast.Module, name: str) -> bool:
    """Is ``name`` set or changed other than by top-level ``name = ...`` statements
    (under an ``if``, in a loop, ``+=``, ``.append(...)``)?"""
    top: set[int] = set()
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])  # fmt: skip
        top.update(id(t) for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store)
                and id(node) not in top):  # fmt: skip
            return True
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                node.value.id == name):  # fmt: skip
            return True
    return False


def _literal_strings(node: ast.expr) -> list[str] | None:
    """``["a", "b"]`` or ``("a",)`` as a list; None for anything computed."""
    if not isinstance(node, ast.List | ast.Tuple):
        return None
    items = [e.value for e in node.elts if isinstance(e, ast.Constant)]
    if len(items) != len(node.elts) or not all(isinstance(i, str) for i in items):
        return None
    return [str(i) for i in items]


def _star_import(path: Path, stmt: ast.ImportFrom) -> Path | None:
    """The file a relative ``from .base import *`` in ``path`` reads, if it exists."""
    if not any(alias.name == "*" for alias in stmt.names):
        return None
    folder = path.parent
    for _ in range(stmt.level - 1):
        folder = folder.parent
    base = folder.joinpath(*(stmt.module or "__init__").split("."))
    found = base.with_suffix(".py")
    if not found.is_file():
        found = base / "__init__.py"
    return found if found.is_file() else None


def _read_module(path: Path, result: DjangoSettings, ev: _Evaluator, depth: int = 0) -> None:
    tree = _parse(path)
    if tree is None:
        result.notes.append(f"could not parse {path}")
        return
    result.files_read.append(path)
    ev.path = path
    hosts_computed = _changed_elsewhere(tree, "ALLOWED_HOSTS")
    followed: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.level and depth < 3:
            found = _star_import(path, stmt)
            if found is not None and found not in result.files_read:
                followed.add(id(stmt))
                _read_module(found, result, ev, depth + 1)
                ev.path = path
            continue
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        if value is None:
            continue
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            if target.id == "ALLOWED_HOSTS":
                result.allowed_hosts = None if hosts_computed else _literal_strings(value)
                result.allowed_hosts_file = path
            elif target.id == "DEBUG":
                literal = value.value if isinstance(value, ast.Constant) else None
                result.debug = literal if isinstance(literal, bool) else None
            if target.id in ("STORAGES", "STATICFILES_STORAGE") and _mentions_manifest(value):
                result.manifest_storage = True
            evaluated = ev.eval(value)
            if evaluated is None:
                ev.names.pop(target.id, None)
                if target.id in SETTING_NAMES:
                    result.values.pop(target.id, None)
                    result.notes.append(
                        f"{target.id} in {path.name} (line {stmt.lineno}) is computed in a "
                        "way bext does not evaluate; using the default"
                    )
                continue
            ev.names[target.id] = evaluated
            if target.id in SETTING_NAMES:
                result.values[target.id] = evaluated
    # A star import not followed (absolute, under `try`, not found) may set anything.
    unfollowed = any(
        isinstance(node, ast.ImportFrom) and id(node) not in followed
        and any(alias.name == "*" for alias in node.names)
        for node in ast.walk(tree)
    )  # fmt: skip
    if hosts_computed or unfollowed:
        result.allowed_hosts = None
        result.allowed_hosts_file = path


def read_settings(app_dir: Path) -> DjangoSettings:
    """Static/media settings of the Django project whose manage.py is in ``app_dir``."""
    result = DjangoSettings()
    manage = app_dir / "manage.py"
    result.files_read.append(manage)
    module = settings_module_from_manage(manage)
    if module is None:
        result.notes.append("manage.py names no DJANGO_SETTINGS_MODULE default")
        candidates = sorted(app_dir.glob("*/settings.py"))
        if len(candidates) != 1:
            return result
        module = f"{candidates[0].parent.name}.settings"
        result.notes.append(f"using the only settings module found, {module}")
    result.module = module
    path = module_file(app_dir, module)
    if path is None:
        result.notes.append(f"settings module {module} not found under {app_dir}")
        return result
    _read_module(path, result, _Evaluator(path))
    for key in ("STATIC_URL", "MEDIA_URL"):
        value = result.values.get(key)
        if isinstance(value, Path):
            result.values[key] = str(PurePosixPath(value))
    for key in ("STATIC_ROOT", "MEDIA_ROOT"):
        value = result.values.get(key)
        if isinstance(value, str):
            p = Path(value)
            result.values[key] = p if p.is_absolute() else app_dir / p
    return result
