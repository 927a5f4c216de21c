"""Find the app server a project already names, and where it listens.

Looked at, in order: ``gunicorn.conf.py`` (``bind = ...``), a ``Procfile`` ``web:`` line,
systemd units (``*.service``) in the tree, then gunicorn/uvicorn among the dependencies.

For Gunicorn, how many requests it serves at once (``workers`` x ``threads``, from the
command line and ``gunicorn.conf.py``) becomes the upstream's ``max_conns``, so that bext
queues bursts beyond that itself. Only literal numbers count: a count computed at start
(``multiprocessing.cpu_count() * 2 + 1``, ``$WEB_CONCURRENCY``) or left to Gunicorn's
default (which ``WEB_CONCURRENCY`` changes) sets nothing, and says so. Asynchronous worker
classes (gevent, eventlet, Uvicorn's) and Uvicorn itself get no limit.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
    max_conns: int | None = None
    """Requests the server takes at once (Gunicorn workers x threads), when known."""
    max_conns_reason: str = ""


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


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command.replace("\\\n", " "))
    except ValueError:
        return command.split()


def parse_command(command: str) -> tuple[str | None, str | None]:
    """(server, url) from a gunicorn/uvicorn command line; url None when not given."""
    argv = _split(command)
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
    server, command = _find(root, app_dir, dependencies, default, read)
    if server.name == "uvicorn":
        return replace(server, max_conns_reason="Uvicorn is asynchronous: no max_conns"), read
    if server.name != "gunicorn":
        return server, read
    settings: dict[str, tuple[str, str]] = {}
    for folder in dict.fromkeys((app_dir, root)):
        conf = folder / "gunicorn.conf.py"
        if conf.is_file():  # Gunicorn reads ./gunicorn.conf.py by itself
            settings.update(_conf_settings(conf))
            break
    if command is None:  # the bind came from gunicorn.conf.py: the command line may add more
        command = next((c for c in _commands(root, app_dir, read)
                        if parse_command(c[0])[0] == "gunicorn"), None)  # fmt: skip
    if command is not None:
        settings.update(command_settings(_split(command[0]), command[1].name))
    max_conns, why = gunicorn_max_conns(settings)
    return replace(server, max_conns=max_conns, max_conns_reason=why), read


def _commands(root: Path, app_dir: Path, read: list[Path]) -> Iterator[tuple[str, Path]]:
    """Command lines that may start the app: Procfile ``web:`` lines, then systemd units'
    ``ExecStart``, with the file each is in (added to ``read`` as it is opened)."""
    for folder in dict.fromkeys((app_dir, root)):
        procfile = folder / "Procfile"
        if not procfile.is_file():
            continue
        if procfile not in read:
            read.append(procfile)
        for line in procfile.read_text(errors="replace").splitlines():
            if line.startswith("web:"):
                yield line[4:], procfile
    for unit in unit_files(root):
        if unit not in read:
            read.append(unit)
        command = _exec_start(unit.read_text(errors="replace"))
        if command:
            yield command, unit


def _find(
    root: Path, app_dir: Path, dependencies: set[str], default: str, read: list[Path]
) -> tuple[AppServer, tuple[str, Path] | None]:
    """The app server, and the command line that starts it when a file names one."""
    for folder in dict.fromkeys((app_dir, root)):
        conf = folder / "gunicorn.conf.py"
        if conf.is_file():
            read.append(conf)
            bind = _gunicorn_conf(conf)
            url = bind_to_url(bind) if bind else None
            if url:
                return AppServer("gunicorn", url, f"bind = {bind!r} in {conf.name}", conf), None
    for command, source in _commands(root, app_dir, read):
        server, url = parse_command(command)
        if server:
            if source.name == "Procfile":
                why, no_bind = f"Procfile web: runs {server}", "bind not fixed there"
            else:
                why, no_bind = f"ExecStart in {source.name} runs {server}", "no bind there"
            return _named(server, url, why, no_bind, source), (command, source)
    for name in ("gunicorn", "uvicorn"):
        if name in dependencies:
            why = f"{name} is a dependency; assuming it listens on {DEFAULT_BIND}"
            return AppServer(name, DEFAULT_URL, why), None
    why = f"no app server named in the project; assuming {default} on {DEFAULT_BIND}"
    return AppServer(None, DEFAULT_URL, why), None


def _named(server: str, url: str | None, why: str, no_bind: str, source: Path) -> AppServer:
    """The app server a file names; without a bind there, the default one is assumed."""
    if url is None:
        return AppServer(server, DEFAULT_URL, f"{why} ({no_bind}, assuming {DEFAULT_BIND})", source)
    return AppServer(server, url, why, source)


# -- how many requests Gunicorn serves at once ---------------------------------------------

COMPUTED = "?"
"""A setting that is there but not a literal (an expression, ``$WEB_CONCURRENCY``)."""
_OPTIONS = {"-w": "workers", "--workers": "workers", "--threads": "threads",
            "-k": "worker_class", "--worker-class": "worker_class"}  # fmt: skip
_SYNC_CLASSES = ("sync", "gthread", "gunicorn.workers.sync.SyncWorker",
                 "gunicorn.workers.gthread.ThreadWorker")  # fmt: skip


def command_settings(argv: list[str], where: str) -> dict[str, tuple[str, str]]:
    """``workers``, ``threads`` and ``worker_class`` from Gunicorn's command line, each as
    (value, where it was found); ``COMPUTED`` for a shell variable."""
    found: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, sep, value = arg.partition("=")
        name = None
        if sep and key in _OPTIONS:
            name = _OPTIONS[key]
        elif arg in _OPTIONS and i + 1 < len(argv):
            name, value = _OPTIONS[arg], argv[i + 1]
            i += 1
        elif arg.startswith("-w") and arg[2:].isdigit():
            name, value = "workers", arg[2:]
        if name is not None:
            found[name] = (COMPUTED if "$" in value else value, where)
        i += 1
    return found


def _conf_settings(path: Path) -> dict[str, tuple[str, str]]:
    """The same settings from a ``gunicorn.conf.py`` (top-level assignments)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return {}
    found: dict[str, tuple[str, str]] = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign):
            continue
        for target in stmt.targets:
            if isinstance(target, ast.Name) and target.id in ("workers", "threads",
                                                              "worker_class"):  # fmt: skip
                value = stmt.value
                literal = value.value if isinstance(value, ast.Constant) else None
                shown = str(literal) if isinstance(literal, int | str) else COMPUTED
                found[target.id] = (shown, path.name)
    return found


def gunicorn_max_conns(settings: dict[str, tuple[str, str]]) -> tuple[int | None, str]:
    """``workers`` x ``threads`` when both are known, with the reason (or why not)."""
    worker_class, class_where = settings.get("worker_class", ("sync", ""))
    if worker_class not in _SYNC_CLASSES:
        if worker_class == COMPUTED:
            return None, f"Gunicorn's worker class is computed in {class_where}: no max_conns"
        return None, f"Gunicorn runs {worker_class} workers (asynchronous): no max_conns"
    workers, workers_where = settings.get("workers", ("", ""))
    threads, threads_where = settings.get("threads", ("1", ""))
    manual = "set max_conns to its workers x threads by hand"
    if not workers:
        return None, (
            "Gunicorn's worker count is not named in the project (its default follows "
            f"$WEB_CONCURRENCY): no max_conns; {manual}"
        )
    if not (workers.isdigit() and threads.isdigit()) or int(workers) * int(threads) < 1:
        where = workers_where if not workers.isdigit() else threads_where
        return (
            None,
            f"Gunicorn's workers or threads are computed in {where}: no max_conns; " + manual,
        )
    count = int(workers) * int(threads)
    places = " and ".join(dict.fromkeys(w for w in (workers_where, threads_where) if w))
    return count, f"max_conns = {count}: Gunicorn runs {workers} workers x {threads} " + (
        f"threads ({places})"
    )
