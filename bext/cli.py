"""The ``bext`` command line.

Exit codes a script can rely on:

====  ===========================================================
0     success (``check``: the configuration is valid)
1     runtime failure (cannot bind, ...); ``waf test``: the request is blocked
2     bad command-line usage
78    invalid configuration (``EX_CONFIG`` from sysexits.h)
====  ===========================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    cert = verbs.add_parser(
        "cert",
        help='show where bext\'s local CA is (tls = "internal") and how to trust it',
        description='With tls = "internal" bext issues certificates from its own local CA, '
        "created on first use in its state directory ($BEXT_STATE_DIR, systemd's "
        "$STATE_DIRECTORY, /var/lib/bext as root, else ~/.local/share/bext). This prints "
        "where the root certificate is and how to make browsers, curl and Python trust it.",
    )
    cert.add_argument("--path", action="store_true", help="print only the root certificate path")
    cert.set_defaults(func=cmd_cert)

    _add_scaffold_verbs(verbs)

    for verb, summary, details in (
        (
            "reload",
            "re-read the configuration of a running master without dropping connections",
            "Ask the running master to reload: it validates the configuration, starts new "
            "workers with it, then retires the old ones gracefully. An invalid configuration "
            "is refused (the old one keeps serving) and the reason printed; exit 78 then.",
        ),
        (
            "status",
            "show the running master: workers, generation, memory, counters",
            "Print the running master's state: PIDs, generation, uptime, RSS and CPU per "
            "process, and request counters summed from shared memory. --json for machines.",
        ),
        (
            "upgrade",
            "start the newly installed bext without dropping connections",
            "Binary upgrade: the running master starts a new master from the installed code, "
            "handing it the listening sockets; once its workers listen, the old master "
            "drains and exits (like nginx's and Gunicorn's USR2).",
        ),
        (
            "stop",
            "stop the running master gracefully",
            "Ask the running master to stop gracefully (like SIGTERM): in-flight requests "
            "finish up to server.graceful_timeout.",
        ),
    ):
        sub = verbs.add_parser(verb, help=summary, description=details)
        _add_config_option(sub)
        if verb == "status":
            sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=cmd_control, command=verb)
    _add_cache_verbs(verbs)
    _add_waf_verbs(verbs)
    return parser


def _add_cache_verbs(verbs: Any) -> None:
    """``bext cache purge``: invalidate cached responses through the running master."""
    cache = verbs.add_parser("cache", help="response cache helpers: purge",
                             description="Act on the running master's response cache.")  # fmt: skip
    cache_verbs = cache.add_subparsers(dest="cache_verb", metavar="COMMAND", required=True)
    purge = cache_verbs.add_parser(
        "purge",
        help="invalidate cached responses by tag, URL, prefix or all",
        description="Ask the running master to invalidate cached responses: those stored "
        "with a tag (Cache-Tag), those of a URL (a path like /page?q=1, every host, or an "
        "http(s) URL for one host), those under a path prefix, or everything. --soft marks "
        "them stale instead: each is served once more (Cache-Status detail=soft-purged) "
        "while it is refreshed. Options may be repeated; --all goes alone.",
    )
    purge.add_argument("--tag", action="append", metavar="TAG", help="a cache tag")
    purge.add_argument("--url", action="append", metavar="URL", help="a path or http(s) URL")
    purge.add_argument("--prefix", action="append", metavar="PREFIX",
                       help="a path prefix or http(s) URL prefix")  # fmt: skip
    purge.add_argument("--all", action="store_true", help="every cached response")
    purge.add_argument("--soft", action="store_true",
                       help="mark stale (served while refreshed) instead of removing")  # fmt: skip
    _add_config_option(purge)
    purge.set_defaults(func=cmd_cache_purge)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _add_waf_verbs(verbs: Any) -> None:
    """``bext waf test`` and ``bext waf report`` (logic in bext.waf.offline and .report)."""
    waf = verbs.add_parser(
        "waf",
        help="web application firewall helpers: test, report",
        description="Try the [waf] rules offline; summarise the audit log.",
    )
    waf_verbs = waf.add_subparsers(dest="waf_verb", metavar="COMMAND", required=True)
    test = waf_verbs.add_parser(
        "test",
        help="run one request through the WAF rules offline and print the verdict",
        description="Build the WAF from the configuration's [waf] section (it need not be "
        "enabled), run one request through it without any server, and print the verdict "
        "(blocked, would be blocked in detect mode, passed), CRS's anomaly score and the "
        "rules that matched. URL is a path (Host: localhost) or an http(s) URL; a browser's "
        "User-Agent and Accept are added unless given. Exits 0 if the request passes, 1 if "
        "it is (or would be) blocked, 2 for bad usage, 78 if the configuration or the "
        "rules do not load.",
    )
    test.add_argument("url", metavar="URL", help="a path such as /search?q=x or an http(s) URL")
    test.add_argument("--method", "-X", metavar="M",
                      help="request method (default: GET, POST with a body)")  # fmt: skip
    test.add_argument("--header", "-H", action="append", default=[], metavar="'Name: value'",
                      help="a request header (repeatable)")  # fmt: skip
    body = test.add_mutually_exclusive_group()
    body.add_argument("--data", "-d", metavar="D", help="the request body")
    body.add_argument("--data-file", type=Path, metavar="F",
                      help="read the request body from a file (- for stdin)")  # fmt: skip
    _add_config_option(test)
    test.set_defaults(func=cmd_waf_test)

    report = waf_verbs.add_parser(
        "report",
        help="summarise the WAF audit log: blocks, top rules, paths, clients",
        description="Read the audit log ([waf] audit_log, or --log) and print how many "
        "requests were blocked or detected, the most frequent rules, paths and clients, "
        "and a [[waf.exclusions]] entry for the most frequent rule and path, ready to paste "
        "if those are false positives. Malformed lines are counted and skipped.",
    )
    report.add_argument("--since", metavar="DURATION",
                        help="only entries this recent: 30m, 1h, 2d (default: all)")  # fmt: skip
    report.add_argument("--log", type=Path, metavar="FILE",
                        help="the audit log to read (default: [waf] audit_log)")  # fmt: skip
    report.add_argument("--top", type=_positive_int, default=10, metavar="N",
                        help="how many rules, paths and clients to list (default: 10)")  # fmt: skip
    _add_config_option(report)
    report.set_defaults(func=cmd_waf_report)


def _add_scaffold_verbs(verbs: Any) -> None:
    """``bext new`` and ``bext site autoconfigure`` (logic in bext.starter and bext.site)."""
    new = verbs.add_parser(
        "new",
        help="create a new project from a template (default @bext/starter-django)",
        description="Write a runnable project into ./NAME from a template shipped with bext: "
        "a Django project with settings for running behind bext, bext.config.toml, "
        "requirements.txt and systemd units for Gunicorn and Uvicorn. NAME may contain "
        "dashes (my-app -> Python package my_app). Nothing is written on error.",
    )
    new.add_argument("name", nargs="?", metavar="NAME", help="the project folder to create")
    new.add_argument("--template", default="@bext/starter-django", metavar="TEMPLATE",
                     help="template name (default: @bext/starter-django)")  # fmt: skip
    new.add_argument("--list-templates", action="store_true", help="list templates and exit")
    new.set_defaults(func=cmd_new)

    site = verbs.add_parser("site", help="site helpers: autoconfigure",
                            description="Helpers for an existing project.")  # fmt: skip
    site_verbs = site.add_subparsers(dest="site_verb", metavar="COMMAND", required=True)
    auto = site_verbs.add_parser(
        "autoconfigure",
        help="detect the project's framework and write bext.config.toml",
        description="Detect the framework of the project in DIR (default: .) with the rules "
        "in bext/catalog/frameworks.toml (first match wins: Django, FastAPI/Starlette, "
        "Flask, static site), read its static/media settings and app server without "
        "running any of its code, print what was found and why, and write "
        "DIR/bext.config.toml. Exits 1 if nothing (or more than one project) is found.",
    )
    auto.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR")
    auto.add_argument("--force", action="store_true", help="replace an existing config")
    auto.add_argument("--dry-run", action="store_true",
                      help="print the configuration instead of writing it")  # fmt: skip
    auto.set_defaults(func=cmd_autoconfigure)


def cmd_new(args: argparse.Namespace) -> int:
    from bext.starter import ScaffoldError, create_project, list_templates

    if args.list_templates:
        for template in list_templates():
            print(f"{template.name:<24} {template.description}")
        return EXIT_OK
    if not args.name:
        print("bext new: a project NAME is required (e.g. bext new my-app)", file=sys.stderr)
        return EXIT_USAGE
    try:
        target, _ = create_project(args.name, args.template)
    except ScaffoldError as exc:
        print(f"bext new: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"bext new: cannot create the project: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"created {target} from {args.template}")
    print(f"next: cd {args.name}, then follow README.md (venv, migrate, collectstatic, run)")
    return EXIT_OK


def cmd_autoconfigure(args: argparse.Namespace) -> int:
    from bext.site.autoconfigure import autoconfigure

    if not args.dir.is_dir():
        print(f"bext: {args.dir} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    return autoconfigure(args.dir, force=args.force, dry_run=args.dry_run)


def _load(path: Path, heading: str = "bext: invalid configuration") -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{heading}\n{exc}", file=sys.stderr)
        return None


def control_path(config_path: Path, config: Config | None = None) -> Path:
    """The running master's control socket: ``server.control_socket`` or the default.

    Without ``config`` the setting is read from the raw TOML without validating the rest:
    ``bext reload`` must reach the master even when the edited file is invalid (the master
    then reports the problems).
    """
    from bext.master.control import default_socket_path

    if config is not None:
        socket_path = config.server.control_socket
    else:
        socket_path = _raw_control_socket(config_path)
    return socket_path if socket_path is not None else default_socket_path(config_path)


def _raw_control_socket(config_path: Path) -> Path | None:
    """``server.control_socket`` resolved as `load_config` would, or None if unusable."""
    import tomllib

    from bext.config.values import resolve_path

    try:
        raw = tomllib.loads(config_path.read_text())["server"]["control_socket"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(raw, str):
        return None
    try:
        return resolve_path(config_path.expanduser().absolute().parent, raw)
    except ValueError:  # NUL or control characters: the master reports the config itself
        return None


def cmd_check(args: argparse.Namespace) -> int:
    """Validate as ``run`` would, without binding or writing; never a traceback."""
    try:
        return _check(args)
    except Exception as exc:  # whatever the input, check reports instead of crashing
        print(
            f"bext: invalid configuration\ncannot be checked: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_CONFIG


def _check(args: argparse.Namespace) -> int:
    from bext.config.describe import config_notes, describe_listeners, describe_routes

    path: Path = args.file or args.config
    config = _load(path)
    if config is None:
        return EXIT_CONFIG
    tls_notes = _check_tls(config)
    if tls_notes is None:
        return EXIT_CONFIG
    problem = _check_build(config) or _check_access_log(config.log.access)
    if problem:
        print(f"bext: invalid configuration\n{problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"configuration {path}: ok")
    print(f"listeners: {describe_listeners(config)}")
    print(f"workers: {config.server.workers}")
    print("routes (first match wins):")
    print(describe_routes(config))
    from bext.site.probe_hints import probe_hints

    for note in [*tls_notes, *config_notes(config), *probe_hints(config)]:
        print(f"note: {note}")
    return EXIT_OK


def _check_tls(config: Config) -> list[str] | None:
    """Check the certificate files as ``run`` would; None (and a report) if unusable.

    With ``tls = "internal"`` nothing is issued here: ``check`` never writes anything.
    """
    tls = config.server.tls
    if tls is None:
        return []
    from bext.tls.certs import resolve_certificates
    from bext.tls.errors import TLSSetupError
    from bext.tls.internal_ca import state_dir

    if tls.internal:
        return [f"tls: certificates from bext's local CA in {state_dir() / 'pki'} "
                "(run `bext cert` to see how to trust it)"]  # fmt: skip
    try:
        resolved = resolve_certificates(config)
    except TLSSetupError as exc:
        print(f"bext: invalid TLS setup\n{exc}", file=sys.stderr)
        return None
    return list(resolved.warnings)


def _check_build(config: Config) -> str:
    """Compile the request pipeline as the master would; the problem ("" if none).

    Without the shared-memory segment: nothing is claimed, nothing is written.
    """
    from bext.worker.pipeline import BuildError, Pipeline

    try:
        Pipeline(config, None)
    except BuildError as exc:
        return str(exc)  # "key: reason"
    except Exception as exc:  # a check must report, never crash
        return f"route_rules: cannot be built: {type(exc).__name__}: {exc}"
    return ""


def _check_access_log(target: str) -> str:
    """Could ``run`` open the access log? Checked without creating it (check never
    writes): the file, if it exists, must be writable, else its folder must be."""
    if target in ("stdout", "stderr", "off"):
        return ""
    if "\0" in target:
        return f"log.access: unusable path {target!r}: it contains a NUL byte"
    try:
        path = Path(target)
        folder = path.parent
        if path.exists():
            if path.is_dir():
                return f"log.access: {target} is a directory"
            if not os.access(path, os.W_OK):
                return f"log.access: {target} is not writable"
            return ""
        if not folder.is_dir():
            return f"log.access: cannot create {target}: the directory {folder} does not exist"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"log.access: cannot create {target}: the directory {folder} is not writable"
    except (OSError, ValueError) as exc:  # a NUL byte in the path, a name too long, ...
        return f"log.access: unusable path {target!r}: {exc}"
    return ""


def cmd_cert(args: argparse.Namespace) -> int:
    """Create bext's local CA if needed and say where it is and how to trust it."""
    from bext.tls.internal_ca import describe_ca, ensure_ca

    try:
        paths = ensure_ca()
    except OSError as exc:
        print(f"bext: cannot create the local CA: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(paths.cert if args.path else describe_ca())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # (worded as the master words a generation it cannot build)
    config = _load(args.config, "bext: cannot start: invalid configuration")
    if config is None:
        return EXIT_CONFIG
    from bext.master.arbiter import Arbiter
    from bext.master.generations import GenerationError
    from bext.master.listeners import BindError
    from bext.observe.errorlog import configure_error_log, log
    from bext.tls.errors import TLSSetupError
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
    path = args.config
    try:
        arbiter = Arbiter(config, worker_main, lambda: load_config(path),
                          control_path(path, config))  # fmt: skip
        return arbiter.run()
    except GenerationError as exc:  # the first generation could not be built
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG if exc.config_fault else EXIT_FAILURE
    except TLSSetupError as exc:
        log.error("invalid TLS setup\n%s", exc)
        return EXIT_CONFIG
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAILURE


def _send(path: Path, command: str) -> str | None:
    """The running master's reply to ``command``, or None (and a report) if none answers."""
    from bext.master.control import send_command

    socket_path = control_path(path)
    try:
        return send_command(socket_path, command)
    except OSError as exc:
        print(
            f"bext: no running master for {path} (control socket {socket_path}: "
            f"{exc.strerror or exc})",
            file=sys.stderr,
        )
        return None


def cmd_control(args: argparse.Namespace) -> int:
    """reload / status / stop: talk to the running master over its control socket."""
    import json

    answer = _send(args.config, args.command)
    if answer is None:
        return EXIT_FAILURE
    if args.command == "status":
        if args.json:
            print(answer)
        else:
            print(_format_status(json.loads(answer)))
        return EXIT_OK
    if answer.startswith("ok"):
        print(f"bext: {answer[3:].strip()}")
        return EXIT_OK
    print(f"bext: {args.command} failed: {answer.removeprefix('error: ')}", file=sys.stderr)
    return EXIT_CONFIG if answer.startswith("error: invalid configuration") else EXIT_FAILURE


def cmd_cache_purge(args: argparse.Namespace) -> int:
    """``bext cache purge``: checked here (usage errors), carried out by the master.

    The master is sent ``cache-purge <JSON>``, the JSON being the admin endpoint's body
    (``POST /__bext/cache/invalidate``), and parses it again; it replies ``ok: <JSON>``
    with the counts or ``error: <reason>``.
    """
    import json

    from bext.cache.purge import MAX_BODY_BYTES, PurgeError, parse_shell

    try:
        parse_shell(args.tag, args.url, args.prefix, args.all, args.soft)
    except PurgeError as exc:
        print(f"bext cache purge: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    document: dict[str, object] = {"soft": args.soft}
    for name, values in (("tags", args.tag), ("urls", args.url), ("prefixes", args.prefix)):
        if values:
            document[name] = values
    if args.all:
        document["all"] = True
    body = json.dumps(document, separators=(",", ":"))
    if len(body) > MAX_BODY_BYTES:
        print(f"bext cache purge: too many or too long targets for one command (over "
              f"{MAX_BODY_BYTES} bytes); split the purge", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    answer = _send(args.config, f"cache-purge {body}")
    if answer is None:
        return EXIT_FAILURE
    if answer.startswith("ok: "):
        try:
            result = json.loads(answer[4:])
            print(_format_purge(result, args.soft))
        except (ValueError, TypeError, KeyError):
            print(f"bext: {answer[4:]}")
        return EXIT_OK
    print(f"bext: cache purge failed: {answer.removeprefix('error: ')}", file=sys.stderr)
    return EXIT_FAILURE


def cmd_waf_test(args: argparse.Namespace) -> int:
    """``bext waf test``: 0 passed, 1 blocked or would be blocked, 2 usage, 78 config."""
    from bext.waf.engine import EngineMissing, RulesError, WafEngine
    from bext.waf.offline import UsageError, build_request, describe, run

    body: bytes | None = None
    if args.data is not None:
        body = args.data.encode("utf-8", "surrogateescape")
    elif args.data_file is not None:
        try:
            if str(args.data_file) == "-":
                body = sys.stdin.buffer.read()
            else:
                body = args.data_file.read_bytes()
        except OSError as exc:
            print(f"bext waf test: cannot read {args.data_file}: {exc.strerror or exc}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    try:
        request = build_request(args.url, args.method, args.header, body)
    except UsageError as exc:
        print(f"bext waf test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        engine = WafEngine(config.waf)
    except (EngineMissing, RulesError, OSError) as exc:
        print(f"bext: invalid configuration\nwaf: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # as `bext check`: report, never a traceback
        print(f"bext: invalid configuration\nwaf: cannot be built: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    verdict = run(engine, request)
    if not config.waf.enabled:
        print(f"note: [waf] is not enabled in {args.config}: bext does not inspect requests yet")
    print("\n".join(describe(engine, request, verdict)))
    return EXIT_FAILURE if verdict.exceeded else EXIT_OK


def cmd_waf_report(args: argparse.Namespace) -> int:
    """``bext waf report``: 0 printed, 1 the log cannot be read, 2 usage (no log), 78 config."""
    import time
    from datetime import UTC, datetime

    from bext.config.units import parse_duration
    from bext.waf.report import format_summary, summarize

    since = None
    period = "all entries"
    if args.since is not None:
        try:
            seconds = parse_duration(args.since)
        except ValueError as exc:
            print(f"bext waf report: --since: {exc}", file=sys.stderr)
            return EXIT_USAGE
        since = datetime.fromtimestamp(time.time() - seconds, UTC)
        period = f"last {args.since.strip()}"
    path: Path | None = args.log
    if path is None:
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        path = config.waf.audit_log
        if path is None:
            print(f"bext waf report: no audit log: {args.config} has no [waf] audit_log; "
                  "set it, or name the log with --log FILE", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            summary = summarize(lines, since)
    except OSError as exc:
        print(f"bext waf report: cannot read the audit log {path}: {exc.strerror or exc}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
    print("\n".join(format_summary(summary, str(path), period, args.top)))
    return EXIT_OK


def _format_purge(result: dict[str, Any], soft: bool) -> str:
    """``purged: 1 tag, 0 entries`` (``marked stale: ...`` for --soft)."""

    def count(number: object, one: str, many: str) -> str:
        return f"{number} {one if number == 1 else many}"

    done = "marked stale" if soft else "purged"
    entries = count(result["entries"], "entry", "entries")
    if result["all"]:
        return f"{done}: everything" if soft else f"{done}: everything ({entries})"
    return f"{done}: {count(result['tags'], 'tag', 'tags')}, {entries}"


def _format_status(status: dict[str, Any]) -> str:
    def mib(value: object) -> str:
        return f"{int(value) / 1048576:.1f} MiB" if isinstance(value, int) else "-"

    master = status["master"]
    lines = [
        f"bext {status['version']}: master {master['pid']}, generation {status['generation']}, "
        f"up {status['uptime_seconds']}s, RSS {mib(master.get('rss'))}",
        f"listening on {', '.join(status['listeners'])}",
    ]
    if status.get("starting_generation") is not None:
        lines.append(f"reloading: generation {status['starting_generation']} starting")
    for worker in status["workers"]:
        lines.append(
            f"  worker {worker['slot']} pid {worker['pid']} gen {worker['generation']} "
            f"{worker['state']}, RSS {mib(worker.get('rss'))}, "
            f"CPU {worker.get('cpu_seconds', '-')}s"
        )
    counters = status["counters"]
    lines.append(
        "requests {requests}, 2xx {status_2xx}, 3xx {status_3xx}, 4xx {status_4xx}, "
        "5xx {status_5xx}, bytes in {bytes_in}, bytes out {bytes_out}, open connections "
        "{open_connections}, upstream errors {upstream_errors}".format(**counters)
    )
    lines.append(
        f"rate limited (429) {counters.get('rate_limited', 0)}, connections refused "
        f"(max_connections_per_ip) {counters.get('connections_refused', 0)}"
    )
    if any(key.startswith("cache_") for key in counters):
        lines.append(
            "cache: hit {cache_hit}, miss {cache_miss}, stale {cache_stale}, revalidated "
            "{cache_revalidated}, bypass {cache_bypass}, stored {cache_stored}".format(**counters)
        )
    waf = [counters.get(f"waf_{name}", 0) for name in ("inspected", "blocked", "detected")]
    if any(waf):
        lines.append("waf: inspected {}, blocked {}, detected {}".format(*waf))
    latency = status.get("latency_seconds") or {}
    if any(value is not None for value in latency.values()):
        shown = ", ".join(
            f"{name} {value * 1000:.1f} ms" for name, value in latency.items() if value is not None
        )
        lines.append(f"latency (since start): {shown}")
    opened = status.get("connections_open") or {}
    if opened:
        lines.append(
            "connections open: " + ", ".join(f"HTTP/{v} {n}" for v, n in opened.items())
            + f"; reloads {status.get('reloads', 0)}, worker restarts "
            f"{status.get('worker_restarts', 0)}"
        )  # fmt: skip
    for upstream in status.get("upstreams", []):
        lines.append(f"upstream {upstream['upstream']} {upstream['server']}: {upstream['state']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` or similar, which stopped reading: not worth a
        # traceback. Point stdout at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return code
