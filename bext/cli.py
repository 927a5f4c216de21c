"""The ``bext`` command line.

Exit codes a script can rely on:

====  ===========================================================
0     success (``check``: the configuration is valid)
1     runtime failure (cannot bind, a worker could not start, ...)
2     bad command-line usage
78    invalid configuration (``EX_CONFIG`` from sysexits.h)
====  ===========================================================
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bext import __version__
from bext.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        metavar="FILE",
        help=f"configuration file (default: ./{DEFAULT_CONFIG_PATH})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bext",
        description="bext: the edge server for Python web apps. It terminates client "
        "connections, serves static files and proxies the rest to Gunicorn or Uvicorn.",
        epilog="exit codes: 0 ok, 1 runtime failure, 2 usage error, 78 invalid configuration",
    )
    parser.add_argument("--version", action="version", version=f"bext {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    run = verbs.add_parser(
        "run",
        aliases=["serve"],
        help="run the server in the foreground (master and workers)",
        description="Start the master process in the foreground. It binds the listeners, "
        "forks one worker per CPU (server.workers) and supervises them. SIGTERM stops "
        "gracefully, SIGINT/SIGQUIT stop fast.",
    )
    _add_config_option(run)
    run.set_defaults(func=cmd_run)

    check = verbs.add_parser(
        "check",
        help="validate the configuration and print the routing table",
        description="Load and validate the configuration without binding any socket, then "
        "print the listeners and the routing table. Exits 78 if the configuration is "
        "invalid, listing every problem with its key path.",
    )
    _add_config_option(check)
    check.add_argument("file", nargs="?", type=Path, help="configuration file (same as -c)")
    check.set_defaults(func=cmd_check)
    return parser


def _load(path: Path) -> Config | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"bext: invalid configuration\n{exc}", file=sys.stderr)
        return None
    if config.server.tls is not None:
        # Valid in shape, but serving plain HTTP where HTTPS was asked for would be worse
        # than not starting.
        print(
            f"bext: invalid configuration\n{path}: server.tls: TLS termination is not "
            "available in this version; remove [server.tls] for now",
            file=sys.stderr,
        )
        return None
    return config


def cmd_check(args: argparse.Namespace) -> int:
    from bext.config.describe import config_notes, describe_listeners, describe_routes

    path: Path = args.file or args.config
    config = _load(path)
    if config is None:
        return EXIT_CONFIG
    print(f"configuration {path}: ok")
    print(f"listeners: {describe_listeners(config)}")
    print(f"workers: {config.server.workers}")
    print("routes (first match wins):")
    print(describe_routes(config))
    for note in config_notes(config):
        print(f"note: {note}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from bext.master.arbiter import Arbiter
    from bext.master.listeners import BindError
    from bext.observe.errorlog import configure_error_log, log
    from bext.worker.main import worker_main

    try:
        configure_error_log(config.log.level, config.log.error, "master")
    except OSError as exc:
        print(f"bext: cannot open the error log {config.log.error}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        from setproctitle import setproctitle

        setproctitle(f"bext: master -c {args.config}")
    except ImportError:  # pragma: no cover
        pass
    try:
        return Arbiter(config, worker_main).run()
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    code: int = args.func(args)
    return code
