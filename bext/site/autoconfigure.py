"""`bext site autoconfigure`: detect, report, validate, then write (or print) the config."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import TextIO

from bext.config import DEFAULT_CONFIG_PATH, ConfigError, parse_config
from bext.site.detect import DetectError, Detection, detect, rel
from bext.site.render import render_toml, write_config

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 78


def report(d: Detection, out: TextIO) -> None:
    print(f"detected: {d.rule.name} ({d.rule.description})", file=out)
    print(f"  app_dir: {rel(d.app_dir, d.root)}", file=out)
    for reason in d.reasons:
        print(f"  because {reason}", file=out)
    for mount in d.mounts:
        print(f"  static {mount.pattern} -> {rel(mount.root, d.root)} ({mount.why})", file=out)
    if d.app_server is not None:
        print(f"  proxy /** -> {d.app_server.url}", file=out)
    print(f"  files read: {', '.join(rel(p, d.root) for p in d.files_read) or 'none'}", file=out)
    for note in d.notes:
        print(f"  note: {note}", file=out)


def autoconfigure(folder: Path, *, force: bool = False, dry_run: bool = False,
                  out: TextIO | None = None, err: TextIO | None = None) -> int:  # fmt: skip
    out = out or sys.stdout
    err = err or sys.stderr
    target = folder / DEFAULT_CONFIG_PATH.name
    if target.exists() and not force and not dry_run:
        print(f"bext: {target} exists; use --force to replace it or --dry-run to see the "
              "new one", file=err)  # fmt: skip
        return EXIT_FAILURE
    try:
        detection = detect(folder)
    except DetectError as exc:
        print(f"bext: {exc}", file=err)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"bext: cannot read {folder}: {exc}", file=err)
        return EXIT_FAILURE
    text = render_toml(detection)
    try:  # what `bext check` would say, before anything is written
        parse_config(tomllib.loads(text), base_dir=folder, source=str(target))
    except ConfigError as exc:
        print(f"bext: the generated configuration is invalid (a bug):\n{exc}", file=err)
        return EXIT_CONFIG
    report(detection, err if dry_run else out)
    if dry_run:
        out.write(text)
        return EXIT_OK
    try:
        write_config(target, text)
    except OSError as exc:
        print(f"bext: cannot write {target}: {exc.strerror or exc}", file=err)
        return EXIT_FAILURE
    print(f"wrote {target}; check it with `bext check -c {target}`", file=out)
    return EXIT_OK
