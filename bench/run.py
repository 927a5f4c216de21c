"""Benchmark bext against nginx on the same machine, in the same run, and report ratios.

Usage::

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--threads 2]
                                  [--rounds 2] [--scenario NAME ...] [--json OUT]

It writes an nginx and a bext configuration for the selected scenarios (see
:mod:`scenarios`) into a temporary directory, starts one nginx and one bext (same number of
worker processes, 127.0.0.1 only), checks every scenario answers the same status and body
length on both, then loads each scenario with ``wrk --latency``: nginx, bext, nginx, bext,
... for ``--rounds`` rounds, and keeps the best round (highest requests/s) of each server.
A scenario with extra comparison targets (``Scenario.targets``, e.g. ``whitenoise``) has
them verified and loaded in the same alternation (nginx, bext, whitenoise, nginx, ...) and
gets a bext/target ratio column as well.
It prints a table and a markdown snippet for bench/RESULTS.md.

Every process started here is stopped on the way out, whatever the way out is (normal
end, error, Ctrl-C, SIGTERM): try/finally plus atexit. Every wrk run is bounded by ``-d``
and also guarded by a subprocess timeout.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from backends import Endpoint, FixtureContext, bext_server_toml
from procs import (
    GRACE,
    OPENER,
    BenchError,
    Managed,
    Processes,
    bench_main,
    check_nginx_config,
    children_cpu,
    children_of,
    command_line,
    cpu_seconds_by_group,
    fill,
    find_tool,
    free_port,
    log,
    machine_cpu,
    nginx_temp_paths,
    pss_mib_of_group,
    run_tool,
    version_of,
    wait_bext_ready,
    wait_nginx,
)
from pyspy_summary import summarise_file
from scenarios import Scenario, iter_selected, uses_modsecurity

REPO = Path(__file__).resolve().parent.parent
SERVERS = ("nginx", "bext")
"""Always measured; a scenario's ``targets`` come after them in every round."""


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A scenario with its placeholders filled in."""

    scenario: Scenario
    path: str
    nginx_server: str
    nginx_http: str
    bext_routes: str
    lua_path: Path | None
    nginx_main: str = ""
    bext_shared: str = ""
    targets: dict[str, Endpoint] = field(default_factory=dict)
    """Extra comparison targets, started by the scenario's target fixtures."""
    backend_log: Path | None = None
    """``Scenario.backend_log`` filled in: one line per request the backend answered."""


def prepare(
    scenario: Scenario, workdir: Path, stack: ExitStack, context: FixtureContext
) -> Prepared:
    """Write the scenario's files, enter its fixtures (start its backends) and its target
    fixtures (start its extra comparison targets) on ``stack``, fill in its placeholders."""
    root = workdir / "scenarios" / scenario.name
    root.mkdir(parents=True)
    for relative, content in scenario.files.items():
        target = root / relative
        if not target.resolve().is_relative_to(root.resolve()):
            raise BenchError(f"{scenario.name}: file {relative!r} escapes the scenario root")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    values: dict[str, str] = {"root": str(root)}
    scenario_context = replace(context, root=root)
    for fixture in scenario.fixtures:
        values.update(stack.enter_context(fixture(scenario_context)))
    target_context = replace(scenario_context, values=dict(values))
    targets = {
        name: stack.enter_context(target(target_context))
        for name, target in scenario.targets.items()
    }
    backend_log = None
    if scenario.backend_log is not None:
        backend_log = Path(fill(scenario.backend_log, values, f"{scenario.name} backend_log"))
    lua_path = None
    lua_script = scenario.lua_script
    if scenario.method != "GET" or scenario.body is not None:
        if lua_script is not None:
            raise BenchError(f"{scenario.name}: give either method/body or a lua_script")
        lua_script = wrk_request_lua(scenario.method, scenario.body)
    if lua_script is not None:
        lua_path = root / "wrk.lua"
        lua_path.write_text(fill(lua_script, values, f"{scenario.name} lua_script"))
    return Prepared(
        scenario=scenario,
        path=fill(scenario.path, values, f"{scenario.name} path"),
        nginx_server=fill(scenario.nginx_server, values, f"{scenario.name} nginx_server"),
        nginx_http=fill(scenario.nginx_http, values, f"{scenario.name} nginx_http"),
        bext_routes=fill(scenario.bext_routes, values, f"{scenario.name} bext_routes"),
        lua_path=lua_path,
        nginx_main=fill(scenario.nginx_main, values, f"{scenario.name} nginx_main"),
        bext_shared=fill(scenario.bext_shared, values, f"{scenario.name} bext_shared"),
        targets=targets,
        backend_log=backend_log,
    )


def lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal: printable ASCII as is, every other byte (and the
    quote and backslash) as a decimal escape."""
    inner = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03d}" for b in data)
    return f'"{inner}"'


def wrk_request_lua(method: str, body: bytes | None) -> str:
    """A wrk script sending every request with ``method`` and ``body`` (wrk adds the
    Content-Length; other header fields come from ``request_headers`` as ``-H``)."""
    lines = ["-- generated by bench/run.py", f"wrk.method = {lua_string(method.encode())}"]
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    return "\n".join(lines) + "\n"


def _unique(texts: Sequence[str]) -> list[str]:
    """Non-blank ``texts`` without repeats, in first-seen order: what several scenarios
    share (``nginx_main``, ``bext_shared``) is written once."""
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line.strip() else line for line in text.splitlines())


def nginx_config(
    workdir: Path, port: int, workers: int, scenarios: list[Prepared], nginx_v: str
) -> str:
    temp_lines = _indent(nginx_temp_paths(workdir / "nginx-temp", nginx_v), 4)
    main = "".join(f"{line}\n" for line in _unique([p.nginx_main for p in scenarios]))
    http_extra = "\n".join(_indent(p.nginx_http, 4) for p in scenarios if p.nginx_http.strip())
    locations = "\n".join(
        f"        # scenario {p.scenario.name}\n{_indent(p.nginx_server, 8)}" for p in scenarios
    )
    return f"""\
# generated by bench/run.py
{main}worker_processes {workers};
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    keepalive_requests 1000000;
{temp_lines}
{http_extra}
    server {{
        listen 127.0.0.1:{port} reuseport;
{locations}
    }}
}}
"""


def bext_config(workers: int, scenarios: list[Prepared]) -> str:
    routes = "\n".join(
        f"# scenario {p.scenario.name}\n{p.bext_routes.strip()}\n" for p in scenarios
    )
    shared = "".join(
        f"\n# shared by scenarios\n{text}\n" for text in _unique([p.bext_shared for p in scenarios])
    )
    return f"# generated by bench/run.py\n{bext_server_toml(workers)}\n{routes}{shared}"


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    base_url: str
    process: Managed

    @property
    def pgid(self) -> int:
        return self.process.pid


def target_servers(prepared: Prepared) -> list[Server]:
    """The scenario's extra comparison targets as servers to load."""
    return [Server(name, e.base_url, e.process) for name, e in prepared.targets.items()]


def start_nginx(
    procs: Processes,
    nginx: str,
    workdir: Path,
    workers: int,
    scenarios: list[Prepared],
    nginx_v: str,
) -> Server:
    port = free_port()
    (workdir / "nginx-temp").mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, port, workers, scenarios, nginx_v))
    argv = [nginx, "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]
    check_nginx_config(argv, conf)
    managed = procs.start("nginx", [*argv, "-g", "daemon off;"], workdir)
    wait_nginx(managed, port, workers)
    return Server("nginx", f"http://127.0.0.1:{port}", managed)


def start_bext(
    procs: Processes, bext: str, workdir: Path, workers: int, scenarios: list[Prepared]
) -> Server:
    conf = workdir / "bext.toml"
    conf.write_text(bext_config(workers, scenarios))
    managed = procs.start("bext", [bext, "run", "-c", str(conf)], workdir)
    url = wait_bext_ready(managed).split()[0].rstrip("/")
    if not url.startswith("http://127.0.0.1:"):
        raise BenchError(f"bext serves {url}, expected http://127.0.0.1:PORT")
    return Server("bext", url, managed)


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    status: int
    body_length: int
    head_length: int
    """Bytes of status line and header fields as received, a fairness check."""
    cache_status: str | None = None
    """In a cache scenario (``Scenario.cache_hit``): the value of the server's hit header."""


def probe(
    url: str,
    headers: Mapping[str, str],
    cache_header: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Probe:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with OPENER.open(request, timeout=10) as response:
            status, body, msg = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, body, msg = exc.code, exc.read(), exc.headers
    except OSError as exc:
        raise BenchError(f"{method} {url} failed: {exc}") from exc
    head = len(f"HTTP/1.1 {status} XX\r\n") + len(msg.as_bytes())
    cache_status = msg.get(cache_header, "") if cache_header else None
    return Probe(status, len(body), head, cache_status)


HIT_WAIT = 2.0
"""Seconds a cache may take to make the warm-up response a hit (nginx renames its temp file
into the cache once the upstream response is complete, which can be just after the client
has it)."""
HIT_CHECKS = 4
"""Requests (each on a new connection, so likely on different workers) that must all be
hits before a cache scenario is measured."""


def is_hit(value: str, token: str) -> bool:
    """Whether the last member of a (``Cache-Status``-like) list field has ``token`` among
    its ``;``-separated parts: ``bext;hit;ttl=59`` has ``hit``, ``HIT`` has ``HIT``."""
    last = value.rsplit(",", 1)[-1]
    return token in (part.strip() for part in last.split(";"))


def check_hits(prepared: Prepared, server: Server, header: str, token: str) -> Probe:
    """After the verification request has filled ``server``'s cache: wait up to
    :data:`HIT_WAIT` for a hit, then require :data:`HIT_CHECKS` hits in a row."""
    url = server.base_url + prepared.path
    headers = prepared.scenario.request_headers
    deadline = time.monotonic() + HIT_WAIT
    result = probe(url, headers, header)
    while not is_hit(result.cache_status or "", token) and time.monotonic() < deadline:
        time.sleep(0.1)
        result = probe(url, headers, header)
    for _ in range(HIT_CHECKS - 1):
        if not is_hit(result.cache_status or "", token):
            break
        result = probe(url, headers, header)
    if not is_hit(result.cache_status or "", token):
        raise BenchError(
            f"scenario {prepared.scenario.name}: {server.name} is not answering from its "
            f"cache: {header}: {result.cache_status!r}, expected {token!r} "
            f"(status {result.status})"
        )
    return result


def run_checks(prepared: Prepared, servers: Sequence[Server]) -> None:
    """The scenario's :class:`scenarios.Check` requests: every server must answer each with
    the status the check expects of it (a WAF's 403 for an attack, say)."""
    scenario = prepared.scenario
    problems = []
    for check in scenario.checks:
        body = check.body if check.body is not None else scenario.body
        for server in servers:
            expected = check.expected.get(server.name)
            if expected is None:
                raise BenchError(
                    f"scenario {scenario.name}: check {check.name!r} has no expected status "
                    f"for {server.name}"
                )
            result = probe(
                server.base_url + check.path, scenario.request_headers, None, scenario.method, body
            )
            if result.status != expected:
                problems.append(
                    f"{check.name}: {server.name} answered {result.status}, expected {expected}"
                )
    if problems:
        raise BenchError(f"scenario {scenario.name} fails its checks: " + "; ".join(problems))


def verify(prepared: Prepared, servers: Sequence[Server]) -> dict[str, Probe]:
    scenario = prepared.scenario
    probes = {
        s.name: probe(
            s.base_url + prepared.path,
            scenario.request_headers,
            None,
            scenario.method,
            scenario.body,
        )
        for s in servers
    }
    problems = []
    for name, result in probes.items():
        if result.status != scenario.expected_status:
            problems.append(f"{name} answered {result.status}, expected {scenario.expected_status}")
        expected = scenario.expected_body_length
        if expected is not None and result.body_length != expected:
            problems.append(f"{name} sent a {result.body_length}-byte body, expected {expected}")
    lengths = {result.body_length for result in probes.values()}
    if len(lengths) > 1:
        problems.append(
            "body lengths differ: "
            + ", ".join(f"{name} {r.body_length}" for name, r in probes.items())
        )
    if problems:
        raise BenchError(f"scenario {scenario.name} fails verification: " + "; ".join(problems))
    run_checks(prepared, servers)
    # A cache scenario: the requests above filled the caches (one miss per server); what
    # gets measured, and so what the probes report (head size included), are hits.
    for server in servers:
        if server.name in scenario.cache_hit:
            header, token = scenario.cache_hit[server.name]
            hit = check_hits(prepared, server, header, token)
            if hit.body_length != probes[server.name].body_length:
                raise BenchError(
                    f"scenario {scenario.name}: {server.name}'s cache hit has a "
                    f"{hit.body_length}-byte body, the response it stored "
                    f"{probes[server.name].body_length}"
                )
            probes[server.name] = hit
    return probes


# -- wrk --------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_P99 = re.compile(r"^\s*99(?:\.000)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_P50 = re.compile(r"^\s*50(?:\.000)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkResult:
    server: str
    round: int
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx: int
    server_cpu: float
    """Server processes' CPU time / wall time of the run, in cores."""
    wrk_cpu: float
    machine_idle: float
    """Share of all CPUs idle during the run: well above 0 means the load did not saturate."""
    machine_steal: float
    others_cpu: float
    """CPU used by everything else on the machine (other tenants, this runner), in cores.
    Approximate: user+system time of the machine minus the server's, wrk's and backends'."""
    backend_cpu: float
    """CPU of the proxy scenarios' backends (all of them; idle ones use ~0), in cores."""
    output: str = field(repr=False)
    backend_requests: int | None = None
    """Requests the scenario's backend answered during the run (``Scenario.backend_log``
    lines), when the scenario counts them."""
    pss_mib: float = 0.0
    """The server's whole process tree (master and workers), PSS at the end of the load."""

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU (user+system) per response in microseconds: robust to CPU stolen by
        other tenants, though not to cache effects."""
        return 1e6 * self.server_cpu / self.rps if self.rps else float("inf")

    @property
    def backend_us_per_request(self) -> float:
        return 1e6 * self.backend_cpu / self.rps if self.rps else float("inf")

    @property
    def clean(self) -> bool:
        return self.socket_errors == 0 and self.non_2xx == 0


def _latency_ms(pattern: re.Pattern[str], text: str, what: str) -> float:
    match = pattern.search(text)
    if match is None:
        raise BenchError(f"no {what} line in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(text: str) -> tuple[float, float, float, int, int, int]:
    """(rps, p50 ms, p99 ms, requests, socket errors, non-2xx/3xx) from ``wrk --latency``."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    return (
        float(rps.group(1)),
        _latency_ms(_P50, text, "50%"),
        _latency_ms(_P99, text, "99%"),
        int(total.group(1)),
        sum(int(n) for n in errors.groups()) if errors else 0,
        int(non_2xx.group(1)) if non_2xx else 0,
    )


@dataclass(frozen=True)
class Load:
    wrk: str
    threads: int
    connections: int
    duration: int

    def connections_for(self, scenario: Scenario) -> int:
        """``--connections``, lowered to the scenario's ``max_connections`` if it has one."""
        return min(self.connections, scenario.max_connections or self.connections)

    def argv(self, url: str, prepared: Prepared, duration: int | None = None) -> list[str]:
        connections = self.connections_for(prepared.scenario)
        argv = [
            self.wrk,
            "--latency",
            "-t",
            str(min(self.threads, connections)),
            "-c",
            str(connections),
            "-d",
            f"{duration or self.duration}s",
        ]
        for name, value in prepared.scenario.request_headers.items():
            argv += ["-H", f"{name}: {value}"]
        argv += prepared.scenario.wrk_args
        if prepared.lua_path is not None:
            argv += ["-s", str(prepared.lua_path)]
        return [*argv, url]


def measure(
    server: Server,
    prepared: Prepared,
    load: Load,
    round_no: int,
    backends: Processes,
    duration: int | None = None,
) -> WrkResult:
    seconds = duration or load.duration
    argv = load.argv(server.base_url + prepared.path, prepared, seconds)
    # A comparison target is started like a backend; while it is the one loaded, its CPU
    # is the server's.
    backend_pgids = [g for g in backends.pgids if g != server.pgid]
    groups = [server.pgid, *backend_pgids]

    def cpu_split() -> tuple[float, float]:
        by_group = cpu_seconds_by_group(groups)
        return by_group[server.pgid], sum(by_group[g] for g in backend_pgids)

    log_lines0 = count_lines(prepared.backend_log)
    (cpu0, backend0), wrk0, t0 = cpu_split(), children_cpu(), time.monotonic()
    machine0 = machine_cpu()
    output = run_tool(argv, seconds)
    wall = time.monotonic() - t0
    (cpu1, backend1), wrk1, machine1 = cpu_split(), children_cpu(), machine_cpu()
    pss = pss_mib_of_group(server.pgid)
    log_lines1 = count_lines(prepared.backend_log)
    total, idle, steal, tasks = (b - a for b, a in zip(machine1, machine0, strict=True))
    server_cpu, wrk_cpu = (cpu1 - cpu0) / wall, (wrk1 - wrk0) / wall
    backend_cpu = (backend1 - backend0) / wall
    others = tasks / os.sysconf("SC_CLK_TCK") / wall - server_cpu - wrk_cpu - backend_cpu
    rps, p50, p99, requests, errors, non_2xx = parse_wrk(output)
    return WrkResult(
        server=server.name,
        round=round_no,
        connections=load.connections_for(prepared.scenario),
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        requests=requests,
        socket_errors=errors,
        non_2xx=non_2xx,
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        others_cpu=max(0.0, others),
        backend_cpu=max(0.0, backend_cpu),
        machine_idle=idle / total if total else 0.0,
        machine_steal=steal / total if total else 0.0,
        output=output,
        backend_requests=(
            None if log_lines0 is None or log_lines1 is None else log_lines1 - log_lines0
        ),
        pss_mib=pss,
    )


def count_lines(path: Path | None) -> int | None:
    """Lines in ``path`` (a backend's access log), 0 if it does not exist yet."""
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


# -- profiling --------------------------------------------------------------------------------


def profile_bext(
    bext: Server, prepared: Prepared, load: Load, py_spy: str, outdir: Path, native: bool
) -> dict[str, object]:
    """Load bext as in a measured round while py-spy samples its first worker."""
    workers = children_of(bext.process.pid)
    if not workers:
        raise BenchError("bext has no worker processes to profile")
    seconds = max(3, min(5, load.duration - 2))
    rate = 50 if native else 100
    outdir.mkdir(parents=True, exist_ok=True)
    suffix = "-native" if native else ""
    out = outdir / f"{prepared.scenario.name}-worker{suffix}.txt"
    spy_argv = [
        py_spy,
        "record",
        "-d",
        str(seconds),
        "-r",
        str(rate),
        "-p",
        str(workers[0]),
        "-o",
        str(out),
        "--format",
        "raw",
    ]
    if native:
        spy_argv.append("--native")
    wrk_seconds = seconds + 3
    wrk = subprocess.Popen(
        load.argv(bext.base_url + prepared.path, prepared, wrk_seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        spy = subprocess.run(
            spy_argv, capture_output=True, text=True, timeout=seconds + GRACE, check=False
        )
    finally:
        try:
            wrk.wait(wrk_seconds + GRACE)
        except subprocess.TimeoutExpired:
            wrk.kill()
            wrk.wait()
    if spy.returncode != 0 or not out.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}):\n{spy.stderr.strip()}")
    summary = summarise_file(out)
    # Without --native py-spy drops samples of an idle thread, so samples / (rate x seconds)
    # estimates how busy the worker was; with --native idle samples (epoll) are recorded.
    idle = sum(n for name, n in summary.categories if name.startswith("event loop idle"))
    busy = 100.0 * (summary.total - idle) / (rate * seconds)
    print(
        f"\n== profile of bext worker {workers[0]}, {prepared.scenario.name}, "
        f"{seconds}s at {rate} Hz ({out}); busy ~{busy:.0f}% of wall time =="
    )
    print(summary.render(12))
    return {
        "file": str(out),
        "worker_pid": workers[0],
        "seconds": seconds,
        "rate": rate,
        "native": native,
        "busy_percent": round(busy, 1),
        **summary.as_dict(15),
    }


# -- reporting --------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    description: str
    probes: dict[str, Probe]
    rounds: list[WrkResult]

    def best(self, server: str) -> WrkResult:
        return max((r for r in self.rounds if r.server == server), key=lambda r: r.rps)

    @property
    def servers(self) -> list[str]:
        """Every server measured, in the order of the rounds (nginx, bext, targets...)."""
        return list(dict.fromkeys(r.server for r in self.rounds))

    @property
    def targets(self) -> list[str]:
        """The extra comparison targets measured (not nginx or bext)."""
        return [s for s in self.servers if s not in SERVERS]

    @property
    def connections(self) -> int:
        return self.rounds[0].connections

    def ratio_to(self, server: str) -> float:
        """bext's requests/s over ``server``'s (best rounds)."""
        return self.best("bext").rps / self.best(server).rps

    @property
    def rps_ratio(self) -> float:
        return self.ratio_to("nginx")

    @property
    def p99_ratio(self) -> float:
        nginx = self.best("nginx").p99_ms
        return self.best("bext").p99_ms / nginx if nginx > 0 else float("inf")

    @property
    def backend_requests(self) -> dict[str, int] | None:
        """Per server, the backend requests of all its measured rounds (the requests its
        cache let through), when the scenario counts them."""
        if any(r.backend_requests is None for r in self.rounds):
            return None
        return {s: sum(r.backend_requests or 0 for r in self.rounds if r.server == s)
                for s in self.servers}  # fmt: skip

    def backend_requests_line(self) -> str | None:
        counts = self.backend_requests
        if counts is None:
            return None
        return "backend requests during run: " + ", ".join(f"{s} {n}" for s, n in counts.items())


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def all_targets(results: Sequence[ScenarioResult]) -> list[str]:
    """Extra comparison targets of any of ``results``, in first-seen order."""
    return list(dict.fromkeys(t for r in results for t in r.targets))


def table_head(targets: Sequence[str] = ()) -> str:
    """The summary table's head: bext vs nginx, then per extra target its requests/s, the
    ratio bext/target and its p99; the CPU and other-load columns list every server."""
    extra = "".join(f" | {t} req/s | **bext/{t}** | {t} p99" for t in targets)
    each = " / ".join(["nginx", "bext", *targets])
    return (
        "| scenario | nginx req/s | bext req/s | **bext/nginx** | nginx p99 | bext p99 "
        f"| p99 bext/nginx{extra} | CPU µs/req {each} | other load {each} | PSS MiB {each} |\n"
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|" * len(targets) + "---:|---:|---:|"
    )


def table_row(result: ScenarioResult, targets: Sequence[str] = ()) -> str:
    nginx, bext = result.best("nginx"), result.best("bext")
    measured = [result.best(s) for s in result.servers]
    flags = "" if all(r.clean for r in measured) else " ⚠ errors"
    extra = ""
    cpu = [f"{nginx.cpu_us_per_request:.1f}", f"{bext.cpu_us_per_request:.1f}"]
    others = [f"{nginx.others_cpu:.2f}", f"{bext.others_cpu:.2f}"]
    pss = [f"{nginx.pss_mib:.1f}", f"{bext.pss_mib:.1f}"]
    for name in targets:
        if name not in result.targets:
            extra += " | - | - | -"
            cpu.append("-")
            others.append("-")
            pss.append("-")
            continue
        target = result.best(name)
        ratio = result.ratio_to(name)
        shown = f"{ratio:.2f}" if ratio < 1 else f"{ratio:.1f}"  # bext/bext-nowaf: ~0.1
        extra += f" | {target.rps:,.0f} | **{shown}** | {_ms(target.p99_ms)}"
        cpu.append(f"{target.cpu_us_per_request:.1f}")
        others.append(f"{target.others_cpu:.2f}")
        pss.append(f"{target.pss_mib:.1f}")
    return (
        f"| {result.name}{flags} | {nginx.rps:,.0f} | {bext.rps:,.0f} "
        f"| **{result.rps_ratio:.2f}** | {_ms(nginx.p99_ms)} | {_ms(bext.p99_ms)} "
        f"| {result.p99_ratio:.2f}{extra} | {' / '.join(cpu)} | {' / '.join(others)} "
        f"| {' / '.join(pss)} |"
    )


def summary_table(results: Sequence[ScenarioResult]) -> str:
    targets = all_targets(results)
    rows = "\n".join(table_row(r, targets) for r in results)
    return f"{table_head(targets)}\n{rows}"


def rounds_table(result: ScenarioResult) -> str:
    lines = [
        f"{result.name}: every round ({result.connections} connections)",
        f"  {'round':>5} {'server':<10} {'req/s':>10} {'p50':>10} {'p99':>10} "
        f"{'srv CPU':>8} {'µs/req':>7} {'backend':>8} {'µs/req':>7} {'wrk CPU':>8} "
        f"{'others':>6} {'idle':>5} {'steal':>5} {'PSS MiB':>7}  errors",
    ]
    for r in result.rounds:
        lines.append(
            f"  {r.round:>5} {r.server:<10} {r.rps:>10,.0f} {_ms(r.p50_ms):>10} "
            f"{_ms(r.p99_ms):>10} {r.server_cpu:>8.2f} {r.cpu_us_per_request:>7.1f} "
            f"{r.backend_cpu:>8.2f} {r.backend_us_per_request:>7.1f} {r.wrk_cpu:>8.2f} "
            f"{r.others_cpu:>6.2f} {r.machine_idle:>5.0%} {r.machine_steal:>5.0%} "
            f"{r.pss_mib:>7.1f}  "
            f"{r.socket_errors} socket, {r.non_2xx} non-2xx"
        )
    return "\n".join(lines)


def environment(nginx: str, wrk: str, bext: str) -> dict[str, str]:
    python = Path(bext).with_name("python")
    libs = apps = "unknown"
    pypi_modsecurity = "unknown"
    if python.exists():
        script = (
            "import importlib.metadata as m, platform\n"
            "def v(name):\n"
            "    try:\n"
            "        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n"
            "        return 'missing'\n"
            "print(platform.python_version(), v('uvloop'), v('httptools'))\n"
            "print(v('gunicorn'), v('django'), v('whitenoise'))\n"
            "print(v('libmodsecurity'))"
        )
        done = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode == 0:
            first, second, third = done.stdout.splitlines()[:3]
            pypi_modsecurity = third.strip()
            py, uvloop, httptools = first.split()
            libs = f"Python {py}, uvloop {uvloop}, httptools {httptools}"
            gunicorn, django, whitenoise = second.split()
            apps = f"Gunicorn {gunicorn}, Django {django}, WhiteNoise {whitenoise}"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpus_usable": str(len(os.sched_getaffinity(0))),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "nginx": version_of([nginx, "-v"], r"nginx/(\S+)"),
        "wrk": version_of([wrk, "-v"], r"wrk (\S+)"),
        "bext": version_of([bext, "--version"], r"bext (\S+)"),
        "bext_git": version_of(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], r"(\S+)"
        ),
        "bext_runtime": libs,
        "app_servers": apps,
        "waf": (
            f"nginx ModSecurity-nginx {deb('libnginx-mod-http-modsecurity')} with "
            f"libmodsecurity3 {deb('libmodsecurity3')}; bext PyPI libmodsecurity "
            f"{pypi_modsecurity}; OWASP CRS {deb('modsecurity-crs')} (Debian)"
        ),
    }


def deb(package: str) -> str:
    """The installed version of a Debian package, or ``unknown``."""
    return version_of(["dpkg-query", "-W", "-f=${Version}\n", package], r"^(\S+)")


def markdown(
    results: list[ScenarioResult],
    waf_names: Collection[str],
    env: Mapping[str, str],
    command: str,
    load: Load,
    rounds: int,
    workers: int,
) -> str:
    targets = all_targets(results)
    waf = f"WAF engines: {env['waf']}.\n" if any(r.name in waf_names for r in results) else ""
    descriptions = "\n".join(
        f"- `{r.name}` (response head: "
        + ", ".join(f"{n} {p.head_length} B" for n, p in r.probes.items())
        + f"): {r.description}"
        + (f"; {line}" if (line := r.backend_requests_line()) else "")
        for r in results
    )
    alternation = ", ".join(["nginx", "bext", *targets] * 2) + ", ..."
    than_targets = "".join(
        f"bext/{t} is bext's requests/s over {t}'s, best round against best round.\n"
        for t in targets
    )
    fewer = [f"{r.name} {r.connections}" for r in results if r.connections != load.connections]
    connections = f"{load.connections} connections" + (f" ({', '.join(fewer)})" if fewer else "")
    return f"""\
### {env["date"]}: {connections}, {load.threads} wrk threads, \
{load.duration} s x {rounds} rounds

`{command}`

Machine: nproc {env["nproc"]} ({env["cpus_usable"]} usable), {env["kernel"]}, \
load average at start {env["loadavg_at_start"]}; nginx and bext {workers} workers each.
Versions: nginx {env["nginx"]}, wrk {env["wrk"]}, bext {env["bext"]} at {env["bext_git"]} \
({env["bext_runtime"]}); app-server side: {env["app_servers"]}.
{waf}
{summary_table(results)}

Best of {rounds} alternating rounds per server ({alternation}).
Ratios above 1 mean bext has more requests/s, or a longer p99 latency, than nginx.
{than_targets}"CPU µs/req" is the server processes' user+system CPU time (softirq
excluded) per response in the best round; "other load" is the CPU, in cores, that
everything but the server, wrk and the proxy scenarios' backends used meanwhile (other
tenants of the machine): a round it hits is skewed.

{descriptions}
"""


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark bext against nginx (same machine, same run) with wrk."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per server")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of unmeasured load per server and scenario (0: none)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes for nginx and for bext (default 2)"
    )
    parser.add_argument(
        "--scenario",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="scenarios to run (default: all)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring, py-spy one bext worker under load per scenario",
    )
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: also record C frames (py-spy --native)",
    )
    parser.add_argument("--nginx", help="nginx binary (default: nginx on PATH or /usr/sbin)")
    parser.add_argument("--wrk", help="wrk binary (default: on PATH)")
    parser.add_argument("--bext", help="bext binary (default: .venv/bin/bext, then PATH)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "threads", "rounds", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk needs one per thread)")
    return args


def measure_scenario(
    item: Prepared,
    servers: Sequence[Server],
    load: Load,
    rounds: int,
    warmup: int,
    backends: Processes,
) -> ScenarioResult:
    """Verify, warm up, then alternate the servers (nginx, bext, then the scenario's extra
    targets) for ``rounds`` measured wrk runs."""
    probes = verify(item, servers)
    log(
        f"\n== {item.scenario.name}: verified "
        + ", ".join(
            f"{n} {p.status}, {p.body_length} B body + {p.head_length} B head"
            + (f" ({item.scenario.cache_hit[n][0]}: {p.cache_status})" if p.cache_status else "")
            for n, p in probes.items()
        )
    )
    for check in item.scenario.checks:
        answers = ", ".join(f"{s.name} {check.expected[s.name]}" for s in servers)
        log(f"   check {check.name}: {answers}")
    if warmup:
        for server in servers:
            measure(server, item, load, 0, backends, warmup)
    results: list[WrkResult] = []
    for round_no in range(1, rounds + 1):
        for server in servers:
            result = measure(server, item, load, round_no, backends)
            results.append(result)
            log(
                f"   round {round_no} {server.name:<10} {result.rps:>10,.0f} req/s"
                f"  p99 {_ms(result.p99_ms)}"
            )
            if not result.clean:
                log(
                    f"   WARNING: {result.socket_errors} socket errors, "
                    f"{result.non_2xx} non-2xx/3xx responses"
                )
    result = ScenarioResult(item.scenario.name, item.scenario.description, probes, results)
    if (line := result.backend_requests_line()) is not None:
        log(f"   {line}")
    return result


def json_document(
    args: argparse.Namespace,
    command: str,
    env: Mapping[str, str],
    results: list[ScenarioResult],
    profiles: Mapping[str, object],
    snippet: str,
) -> dict[str, object]:
    return {
        "command": command,
        "environment": dict(env),
        "settings": {
            name: getattr(args, name)
            for name in ("duration", "connections", "threads", "rounds", "warmup", "workers")
        },
        "scenarios": [
            {
                "name": r.name,
                "description": r.description,
                "connections": r.connections,
                "probes": {n: asdict(p) for n, p in r.probes.items()},
                "rounds": [
                    {
                        **{k: v for k, v in asdict(w).items() if k != "output"},
                        "cpu_us_per_request": w.cpu_us_per_request,
                        "backend_us_per_request": w.backend_us_per_request,
                    }
                    for w in r.rounds
                ],
                "best": {s: r.best(s).round for s in r.servers},
                "rps_ratio": r.rps_ratio,
                "p99_ratio": r.p99_ratio,
                "target_rps_ratios": {t: r.ratio_to(t) for t in r.targets},
                "backend_requests": r.backend_requests,
            }
            for r in results
        ],
        "profiles": dict(profiles),
        "markdown": snippet,
    }


def run(args: argparse.Namespace, argv: list[str]) -> int:
    nginx = find_tool(args.nginx, "/usr/sbin/nginx", "nginx")
    wrk = find_tool(args.wrk, "wrk")
    bext = find_tool(args.bext, str(REPO / ".venv" / "bin" / "bext"), "bext")
    py_spy = None
    if args.profile:
        py_spy = find_tool(None, str(Path(bext).with_name("py-spy")), "py-spy")
    try:
        selected = list(iter_selected(args.scenario))
    except KeyError as exc:
        raise BenchError(str(exc.args[0])) from None
    env = environment(nginx, wrk, bext)
    nginx_v = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10).stderr
    load = Load(wrk, args.threads, args.connections, args.duration)

    procs = Processes()  # nginx and bext
    backends = Processes()  # started by the scenarios' fixtures, which also stop them
    atexit.register(backends.stop)
    atexit.register(procs.stop)  # atexit runs newest first: servers, then backends
    workdir = Path(tempfile.mkdtemp(prefix="bext-bench-"))
    workdir.chmod(0o755)  # nginx workers may run as another user when started by root
    results: list[ScenarioResult] = []
    profiles: dict[str, object] = {}
    try:
        with ExitStack() as stack:
            context = FixtureContext(
                workdir, backends, nginx, nginx_v, Path(bext).parent, bext, args.workers
            )
            prepared = [prepare(s, workdir, stack, context) for s in selected]
            # Registered after the fixtures, so it runs before they exit: the servers stop
            # before their backends go away.
            stack.callback(procs.stop)
            nginx_server = start_nginx(procs, nginx, workdir, args.workers, prepared, nginx_v)
            bext_server = start_bext(procs, bext, workdir, args.workers, prepared)
            log(
                f"nginx {nginx_server.base_url} (pid {nginx_server.process.pid}), "
                f"bext {bext_server.base_url} (pid {bext_server.process.pid}); "
                f"work dir {workdir}"
            )
            for item in prepared:
                servers = (nginx_server, bext_server, *target_servers(item))
                results.append(
                    measure_scenario(item, servers, load, args.rounds, args.warmup, backends)
                )
            if py_spy is not None:
                for item in prepared:
                    for native in (False, True) if args.profile_native else (False,):
                        key = item.scenario.name + (" (native)" if native else "")
                        profiles[key] = profile_bext(
                            bext_server, item, load, py_spy, args.profile, native
                        )
    finally:
        procs.stop()
        backends.stop()
        if args.keep:
            log(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    command = command_line(argv)
    print()
    for scenario_result in results:
        print(rounds_table(scenario_result))
        if (line := scenario_result.backend_requests_line()) is not None:
            print(f"  {line}")
        print()
    print(summary_table(results))
    print("\n---- markdown for bench/RESULTS.md ----\n")
    waf_names = {s.name for s in selected if uses_modsecurity(s)}
    snippet = markdown(results, waf_names, env, command, load, args.rounds, args.workers)
    print(snippet)
    if args.json:
        document = json_document(args, command, env, results, profiles, snippet)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench/run.py", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
