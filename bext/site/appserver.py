"""Find the app server a project already names, and where it listens.

Looked at, in order: ``gunicorn.conf.py`` (``bind = ...``), a ``Procfile`` ``web:`` line,
systemd units (``*.service``) in the tree, then gunicorn/uvicorn among the dependencies.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_URL = f"http://{DEFAULT_BIND}"
SKIP_DIRS = frozenset({".git", ".venv", "venv", "env", "node_modules", "__pycache__",
                       "site-packages", "staticfiles", "media", ".tox", ".mypy_cache"})  # fmt: skip


@dataclass(frozen=True)
class AppServer:
    name: str | None
    """``gunicorn``, ``uvicorn`` or None (not named anywhere)."""
    url: str
    """The upstream URL for bext: ``http://127.0.0.1:8000`` or ``unix:/run/app.sock``."""
    reason: str
    source: Path | None = None


def bind_to_url(bind: str) -> str | None:
    """A Gunicorn bind (``127.0.0.1:8000``, ``0.0.0.0:80``, ``:8000``, ``unix:/x.sock``,
    ``[::1]:8000``) as the URL bext connects to; wildcard addresses become loopback."""
    bind = bind.strip()
    if bind.startswith("unix:"):
        return bind if len(bind) > 5 else None
    if bind.startswith("fd://"):
        return None
    host, sep, port = bind.rpartition(":")
    if not sep:
        host, port = bind, "8000"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def parse_command(command: str) -> tuple[str | None, str | None]:
    """(server, url) from a gunicorn/uvicorn command line; url None when not given."""
    try:
        argv = shlex.split(command.replace("\\\n", " "))
    except ValueError:
        argv = command.split()
    names = [Path(a).name for a in argv]
    server = next((n for n in names if n in ("gunicorn", "uvicorn")), None)
    if server is None and "-m" in argv:
        after = argv[argv.index("-m") + 1 : argv.index("-m") + 2]
        server = after[0] if after and after[0] in ("gunicorn", "uvicorn") else None
    if server is None:
        return None, None
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            opts[key] = value
        elif arg in ("-b", "--bind", "--host", "--port", "--uds") and i + 1 < len(argv):
            opts[arg] = argv[i + 1]
            i += 1
        i += 1
    if server == "gunicorn":
        bind = opts.get("-b") or opts.get("--bind")
        return server, (bind_to_url(bind) if bind and "$" not in bind else None)
    if "--uds" in opts:
        return server, f"unix:{opts['--uds']}"
    host, port = opts.get("--host", "127.0.0.1"), opts.get("--port", "8000")
    if "$" in host or "$" in port:
        return server, None
    return server, bind_to_url(f"{host}:{port}")


def _gunicorn_conf(path: Path) -> str | None:
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "bind" for t in stmt.targets
        ):
            value = stmt.value
            if isinstance(value, ast.List | ast.Tuple) and value.elts:
                value = value.elts[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
    return None


def unit_files(root: Path, depth: int = 3) -> list[Path]:
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                if level < depth and entry.name not in SKIP_DIRS:
                    walk(entry, level + 1)
            elif entry.suffix == ".service" and entry.is_file():
                found.append(entry)

    walk(root, 0)
    return found


def _exec_start(text: str) -> str | None:
    joined = re.sub(r"\\\s*\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=").lstrip("-@:+!")
    return None


def find_app_server(
    root: Path, app_dir: Path, dependencies: set[str], default: str
) -> tuple[AppServer, list[Path]]:
    """The app server and its URL, with the files read to find them."""
    read: list[Path] = []
    for folder in dict.fromkeys((app_dir, root)):
        conf = folder / "gunicorn.conf.py"
        if conf.is_file():
            read.append(conf)
            bind = _gunicorn_conf(conf)
            url = bind_to_url(bind) if bind else None
            if url:
                return AppServer("gunicorn", url, f"bind = {bind!r} in {conf.name}", conf), read
    for folder in dict.fromkeys((app_dir, root)):
        procfile = folder / "Procfile"
        if not procfile.is_file():
            continue
        read.append(procfile)
        for line in procfile.read_text(errors="replace").splitlines():
            server, url = parse_command(line[4:]) if line.startswith("web:") else (None, None)
            if server:
                why = f"Procfile web: runs {server}"
                return _named(server, url, why, "bind not fixed there", procfile), read
    for unit in unit_files(root):
        read.append(unit)
        command = _exec_start(unit.read_text(errors="replace"))
        server, url = parse_command(command) if command else (None, None)
        if server:
            why = f"ExecStart in {unit.name} runs {server}"
            return _named(server, url, why, "no bind there", unit), read
    for name in ("gunicorn", "uvicorn"):
        if name in dependencies:
            why = f"{name} is a dependency; assuming it listens on {DEFAULT_BIND}"
            return AppServer(name, DEFAULT_URL, why), read
    why = f"no app server named in the project; assuming {default} on {DEFAULT_BIND}"
    return AppServer(None, DEFAULT_URL, why), read


def _named(server: str, url: str | None, why: str, no_bind: str, source: Path) -> AppServer:
    """The app server a file names; without a bind there, the default one is assumed."""
    if url is None:
        return AppServer(server, DEFAULT_URL, f"{why} ({no_bind}, assuming {DEFAULT_BIND})", source)
    return AppServer(server, url, why, source)
