"""Where bext's CPU goes under the proxy-fast load: user vs kernel time and context
switches per request, for one or more trees of bext, alternated.

``bench/run.py`` reports bext's CPU per request as one figure. This splits it (psutil's
user and system times of bext's master and workers, and their voluntary and involuntary
context switches, over one wrk run), which is what showed that writing each response and
each upstream request at once cost kernel time: the woken wrk or backend preempted the
worker mid-turn (see ``bext/runtime/outbox.py``).

Setup: ``proxy-fast``'s (a 1-worker nginx backend answering 1 KiB of text/plain, bext with
2 workers, keep-alive pool of 64, no access log), ``wrk -t2 -c64`` for ``--duration``
seconds after a 2 s warm-up. Loopback only, free ports, everything stopped at the end::

    .venv/bin/python bench/cpu_split.py --tree /tmp/before --tree /work/main --rounds 3

Each ``--tree`` is a checkout whose ``bext`` package is put first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
from backends import bext_server_toml
from procs import Processes, free_port, nginx_temp_paths, run_tool, wait_bext_ready, wait_http

BODY = "x" * 1024


def write_configs(root: Path, nginx: str, backend: int) -> None:
    """The backend nginx's config and bext's: the bench's own ``[server]`` and ``[log]``
    tables (:func:`~backends.bext_server_toml`, 2 workers) and proxy-fast's upstream."""
    nginx_v = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    temp = nginx_temp_paths(root, nginx_v).replace("\n", " ")
    (root / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {root}/nginx.pid; error_log {root}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; {temp}\n"
        f"  server {{ listen 127.0.0.1:{backend}; keepalive_requests 1000000;\n"
        f'    location / {{ default_type text/plain; return 200 "{BODY}"; }} }} }}\n'
    )
    (root / "bext.toml").write_text(f"""{bext_server_toml(2)}
[upstreams.app]
keepalive = 64
[[upstreams.app.servers]]
url = "http://127.0.0.1:{backend}"
[[route_rules]]
pattern = "/**"
proxy = "app"
""")


def snapshot(procs: list[psutil.Process]) -> list[float]:
    """user s, system s, voluntary and involuntary switches, summed over ``procs``."""
    total = [0.0, 0.0, 0.0, 0.0]
    for proc in procs:
        times, switches = proc.cpu_times(), proc.num_ctx_switches()
        for index, value in enumerate(
            (times.user, times.system, switches.voluntary, switches.involuntary)
        ):
            total[index] += value
    return total


def measure(tree: Path, bext: str, nginx: str, duration: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="bench-cpu-split-"))
    backend = free_port()
    write_configs(root, nginx, backend)
    processes = Processes()
    try:
        upstream = processes.start(
            "backend-nginx",
            [nginx, "-p", str(root), "-e", f"{root}/error.log", "-c", str(root / "nginx.conf")],
            root,
        )
        wait_http(upstream, f"http://127.0.0.1:{backend}/")
        server = processes.start("bext", [bext, "run", "-c", str(root / "bext.toml")], root,
                                 env=dict(os.environ, PYTHONPATH=str(tree)))  # fmt: skip
        url = wait_bext_ready(server).split(",")[0].strip().rstrip("/") + "/proxy-fast/1k"
        wait_http(server, url)
        run_tool(["wrk", "-t2", "-c64", "-d2s", url], 2)
        master = psutil.Process(server.pid)
        procs = [master, *master.children(recursive=True)]
        before = snapshot(procs)
        out = run_tool(["wrk", "-t2", "-c64", f"-d{duration}s", url], duration)
        after = snapshot(procs)
        found = re.search(r"(\d+) requests in", out)
        assert found is not None, out
        requests = int(found.group(1))
        user, system, voluntary, involuntary = (
            (b - a) / requests for a, b in zip(before, after, strict=True)
        )
        return (
            f"| {tree} | {requests / duration:,.0f} | {user * 1e6:.1f} | {system * 1e6:.1f} "
            f"| {(user + system) * 1e6:.1f} | {voluntary:.2f} | {involuntary:.2f} |"
        )
    finally:
        processes.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=6, help="seconds of measured load")
    parser.add_argument("--bext", default=str(Path(__file__).parent.parent / ".venv/bin/bext"))
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()
    print("| tree | req/s | user µs/req | kernel µs/req | CPU µs/req | voluntary cs/req "
          "| involuntary cs/req |\n|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for _ in range(args.rounds):
        for tree in args.tree:
            print(measure(tree.resolve(), args.bext, args.nginx, args.duration), flush=True)


if __name__ == "__main__":
    main()
