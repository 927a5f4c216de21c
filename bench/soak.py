"""Soak: keep clients busy on a real master through reloads and binary upgrades.

    python bench/soak.py [--minutes 2] [--clients 64] [--reload-every 3] [--upgrade-every 30]

Starts ``bext run`` on an ephemeral loopback port, runs ``--clients`` threads (half
keep-alive, half fresh connections; GET and POST) for ``--minutes`` (bounded: at most 30),
reloads every ``--reload-every`` seconds and runs a binary upgrade every
``--upgrade-every`` seconds, then prints the tally: requests, failures, POSTs sent and
answered, reloads and upgrades done. Exit status 1 if anything failed. Loopback only; the
master (old and new) is always stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.test_supervisor import Load, routes
from tests.support.server import BextProcess, config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--reload-every", type=float, default=3.0)
    parser.add_argument("--upgrade-every", type=float, default=30.0)
    args = parser.parse_args()
    duration = min(args.minutes, 30.0) * 60
    with tempfile.TemporaryDirectory(prefix="bext-soak-") as tmp:
        workdir = Path(tmp)
        server = BextProcess(workdir, config(routes(0), workers=2))
        server.start()
        reloads = upgrades = 0
        version = 0
        try:
            with Load(server.port, clients=args.clients) as load:
                started = time.monotonic()
                next_reload = started + args.reload_every
                next_upgrade = started + args.upgrade_every
                while time.monotonic() - started < duration:
                    now = time.monotonic()
                    if now >= next_upgrade:
                        command = ["upgrade"]
                        next_upgrade = now + args.upgrade_every
                    elif now >= next_reload:
                        version += 1
                        server.config_path.write_text(config(routes(version), workers=2))
                        command = ["reload"]
                        next_reload = now + args.reload_every
                    else:
                        time.sleep(0.1)
                        continue
                    result = subprocess.run(
                        [sys.executable, "-m", "bext", *command, "-c", str(server.config_path)],
                        capture_output=True, text=True, timeout=120,
                    )  # fmt: skip
                    if result.returncode != 0:
                        print(f"{command[0]} failed: {result.stderr.strip()}", file=sys.stderr)
                    elif command == ["upgrade"]:
                        upgrades += 1
                        time.sleep(2)  # let the old master retire before the next change
                    else:
                        reloads += 1
            status = subprocess.run(
                [sys.executable, "-m", "bext", "status", "--json", "-c",
                 str(server.config_path)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            served = json.loads(status.stdout)["counters"]["requests"] if status.stdout else "?"
        finally:
            subprocess.run(
                [sys.executable, "-m", "bext", "stop", "-c", str(server.config_path)],
                capture_output=True, timeout=30,
            )  # fmt: skip
            time.sleep(1)
            server.stop()
    print(
        f"soak: {duration / 60:.1f} min, {args.clients} clients, {reloads} reloads, "
        f"{upgrades} upgrades; {load.ok} requests ok, {len(load.failures)} failed; "
        f"POSTs sent {load.posts_sent}, answered {load.posts_answered}; "
        f"bext counted {served} requests"
    )
    for failure in load.failures[:10]:
        print(f"  {failure}")
    return 1 if load.failures or load.posts_sent != load.posts_answered else 0


if __name__ == "__main__":
    raise SystemExit(main())
