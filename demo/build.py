"""Build the demo project: the starter template's output plus the example app in demo/app.

``make demo`` (scripts/demo.sh), the end-to-end tests and the benchmarks all run the demo
built here, never a hand-kept copy, so the demo cannot drift from what
``bext new NAME --template @bext/starter-django`` gives a user:

1. ``bext new demosite`` renders the starter into ``DEST/demosite`` (``make demo`` uses
   ``build/``);
2. the files under demo/app are added: the ``shop`` app (streaming, server-sent events,
   uploads, downloads, a slow view, a form, a WebSocket echo for Uvicorn) and
   ``demosite/settings_local.py``, which the starter's settings import last and which
   installs ``shop``. Adding never replaces: a file the starter already wrote is an error,
   so every starter file reaches the demo unchanged;
3. the ports in the starter's bext.config.toml are set, when other than the defaults.

A previous build in ``DEST/demosite`` (marked by ``.demo-build``) is replaced, database
included; any other existing folder there is refused.

    python demo/build.py [--dest build] [--port 3000] [--tls-port 3443] [--app-port 8000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bext.starter.scaffold import DEFAULT_TEMPLATE, ScaffoldError, create_project

NAME = "demosite"
APP = Path(__file__).resolve().parent / "app"
MARKER = ".demo-build"
CONFIG = "bext.config.toml"


class DemoBuildError(Exception):
    """The demo could not be built; the message says why."""


@dataclass(frozen=True)
class Ports:
    """Where the demo listens: bext's plain and TLS ports, and the app server's."""

    port: int = 3000
    tls_port: int = 3443
    app_port: int = 8000


_DEFAULTS = Ports()


def build_demo(dest: Path, ports: Ports = _DEFAULTS) -> Path:
    """Build the demo into ``dest/demosite`` and return that folder."""
    dest = dest.absolute()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / NAME
    if target.exists():
        if not (target / MARKER).is_file():
            raise DemoBuildError(f"{target} exists and was not built by demo/build.py")
        shutil.rmtree(target)
    try:
        create_project(NAME, DEFAULT_TEMPLATE, dest)
    except ScaffoldError as exc:
        raise DemoBuildError(f"bext new {NAME}: {exc}") from exc
    (target / MARKER).write_text("Built by demo/build.py; replaced by the next build.\n")
    _add_app(target)
    _set_ports(target / CONFIG, ports)
    return target


def _add_app(target: Path) -> None:
    for source in sorted(APP.rglob("*")):
        if "__pycache__" in source.parts or source.is_dir():
            continue
        relative = source.relative_to(APP)
        destination = target / relative
        if destination.exists():
            raise DemoBuildError(
                f"demo/app/{relative} would replace the starter's own {relative}: the demo "
                "may only add files to the starter's output"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def _set_ports(config: Path, ports: Ports) -> None:
    """Rewrite the three lines of the starter's config that carry ports.

    Each must appear exactly once, even when the port stays the same, so a change to the
    starter's config that this build would silently miss fails here instead.
    """
    text = config.read_text(encoding="utf-8")
    lines = {
        f"port = {_DEFAULTS.port}": f"port = {ports.port}",
        f"port = {_DEFAULTS.tls_port}": f"port = {ports.tls_port}",
        f'url = "http://127.0.0.1:{_DEFAULTS.app_port}"': (
            f'url = "http://127.0.0.1:{ports.app_port}"'
        ),
    }
    out = text.splitlines(keepends=True)
    for old, new in lines.items():
        found = [i for i, line in enumerate(out) if line.rstrip("\n") == old]
        if len(found) != 1:
            raise DemoBuildError(
                f"the starter's {CONFIG} has {len(found)} lines {old!r}, expected 1: "
                "update demo/build.py to match the template"
            )
        out[found[0]] = new + "\n"
    config.write_text("".join(out), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("build"), help="default: build")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port)
    parser.add_argument("--tls-port", type=int, default=_DEFAULTS.tls_port)
    parser.add_argument("--app-port", type=int, default=_DEFAULTS.app_port)
    args = parser.parse_args(argv)
    try:
        target = build_demo(args.dest, Ports(args.port, args.tls_port, args.app_port))
    except (DemoBuildError, OSError) as exc:
        print(f"demo/build.py: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
