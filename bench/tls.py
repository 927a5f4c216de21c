"""TLS and HTTP/2: bext against nginx over https, on the same machine, in the same run.

Usage::

    .venv/bin/python bench/tls.py [--duration 5] [--rounds 2] [--json OUT] [--profile DIR]

It makes a certificate for ``localhost``/``127.0.0.1`` (trustme, ECDSA P-256 by default),
starts one nginx (``listen ... ssl`` + HTTP/2) and one bext (``[server.tls]``) with the same
certificate, the same number of workers and no access log, both serving the same 1 KiB file,
checks that both send that file over HTTP/2, TLS 1.2 and TLS 1.3, then measures, alternating
the servers round by round (nginx, bext, nginx, bext, ...) and keeping each server's best
round:

* ``h2-requests``: requests/s over HTTP/2 on a few long-lived connections
  (``h2load -D S -c 16 -m 10 -t 2``), with mean/p50/p99 latency from h2load's request log;
* ``h1-requests``: the control, requests/s over HTTP/1.1 on the same TLS
  (``wrk -t 2 -c 64``; wrk offers no ALPN);
* ``h2-handshakes``: new connections/s, each a full TLS 1.3 handshake, the HTTP/2 preface
  and one request (``h2load -n C -c C -m 1`` run again and again for S seconds);
* ``tls13-full``, ``tls13-resumed``, ``tls12-full``, ``tls12-resumed``: connections/s,
  each a TLS handshake (full, or resumed with a session ticket) and one HTTP/1.0 GET of
  the file (``openssl s_time -new|-reuse -tls1_3|-tls1_2 -www``, P processes at once).

It prints a table and a markdown snippet for bench/RESULTS.md. Every process started here
is stopped on the way out (normal end, error, Ctrl-C, SIGTERM): try/finally plus atexit;
every load generator run is bounded in time and also killed if it overruns. Traffic goes
to 127.0.0.1 only. See bench/README.md, section "TLS and HTTP/2".
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import random
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from procs import (
    GRACE,
    BenchError,
    Managed,
    Processes,
    bench_main,
    check_nginx_config,
    children_cpu,
    children_of,
    command_line,
    cpu_seconds_by_group,
    find_tool,
    free_port,
    log,
    machine_cpu,
    nginx_temp_paths,
    run_tool,
    version_of,
    wait_bext_ready,
    wait_nginx,
)
from pyspy_summary import parse_frame, parse_raw, summarise_file
from run import parse_wrk

REPO = Path(__file__).resolve().parent.parent
PATH = "/static/1k.bin"
BODY = random.Random(1024).randbytes(1024)
"""The file both servers serve: pseudo-random bytes (fixed seed), so nothing compresses."""
SERVERS = ("nginx", "bext")


# -- certificate and document root ------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    ca: Path
    cert: Path
    key: Path
    docroot: Path
    """Holds ``static/1k.bin``: nginx's ``root``; bext's ``root`` is ``docroot/static``."""


def make_files(workdir: Path, key_type: str) -> Files:
    """A CA and a certificate for localhost and 127.0.0.1 (trustme), and the 1 KiB file."""
    try:
        import trustme
    except ImportError as exc:
        raise BenchError(
            "trustme is missing: .venv/bin/pip install trustme (or the test extras)"
        ) from exc
    kind = trustme.KeyType.RSA if key_type == "rsa" else trustme.KeyType.ECDSA
    ca = trustme.CA(key_type=kind)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=kind)
    tls = workdir / "tls"
    tls.mkdir()
    files = Files(tls / "ca.pem", tls / "cert.pem", tls / "key.pem", workdir / "docroot")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    files.key.chmod(0o600)
    (files.docroot / "static").mkdir(parents=True)
    (files.docroot / "static" / "1k.bin").write_bytes(BODY)
    return files


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: Managed

    @property
    def pgid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{PATH}"


def nginx_version(nginx: str) -> tuple[tuple[int, ...], str]:
    """(version, ``nginx -V`` output)."""
    done = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr)
    if match is None:
        raise BenchError(f"cannot tell the version of {nginx}:\n{done.stderr.strip()}")
    return tuple(int(n) for n in match.groups()), done.stderr


def nginx_listen(version: tuple[int, ...], port: int) -> str:
    """The listen line: nginx 1.25.1 moved HTTP/2 from ``listen ... http2`` to ``http2 on``."""
    if version >= (1, 25, 1):
        return f"listen 127.0.0.1:{port} ssl reuseport;\n        http2 on;"
    return f"listen 127.0.0.1:{port} ssl http2 reuseport;"


def nginx_config(
    workdir: Path, port: int, workers: int, files: Files, version: tuple[int, ...], nginx_v: str
) -> str:
    temp = "\n".join(
        "    " + line for line in nginx_temp_paths(workdir / "nginx-temp", nginx_v).splitlines()
    )
    return f"""\
# generated by bench/tls.py
worker_processes {workers};
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    keepalive_requests 1000000;
{temp}
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;

    server {{
        {nginx_listen(version, port)}
        ssl_certificate {files.cert};
        ssl_certificate_key {files.key};
        ssl_protocols TLSv1.2 TLSv1.3;

        location /static/ {{
            root {files.docroot};
            default_type application/octet-stream;
            sendfile on;
            tcp_nopush on;
            open_file_cache max=1000;
        }}
    }}
}}
"""


def bext_config(port: int, workers: int, files: Files) -> str:
    return f"""\
# generated by bench/tls.py
[server]
port = 0            # the plain listener, unused here
host = "127.0.0.1"
workers = {workers}
max_keepalive_requests = 1000000

[server.tls]
port = {port}
cert = "{files.cert}"
key = "{files.key}"

[log]
access = "off"

[[route_rules]]
pattern = "/static/**"
render = "static"
root = "{files.docroot / "static"}"
"""


def start_nginx(procs: Processes, nginx: str, workdir: Path, workers: int, files: Files) -> Server:
    version, nginx_v = nginx_version(nginx)
    if "--with-http_v2_module" not in nginx_v or "--with-http_ssl_module" not in nginx_v:
        raise BenchError(f"{nginx} lacks the ssl or http_v2 module (nginx -V)")
    port = free_port()
    (workdir / "nginx-temp").mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, port, workers, files, version, nginx_v))
    argv = [nginx, "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]
    check_nginx_config(argv, conf)
    managed = procs.start("nginx", [*argv, "-g", "daemon off;"], workdir)
    wait_nginx(managed, port, workers)
    return Server("nginx", port, managed)


def start_bext(procs: Processes, python: str, workdir: Path, workers: int, files: Files) -> Server:
    port = free_port()
    conf = workdir / "bext.toml"
    conf.write_text(bext_config(port, workers, files))
    managed = procs.start("bext", [python, "-m", "bext", "run", "-c", str(conf)], workdir)
    served = wait_bext_ready(managed)
    wanted = f"https://127.0.0.1:{port}"
    if wanted not in served:
        raise BenchError(f"bext serves {served}, expected {wanted}")
    return Server("bext", port, managed)


# -- verification -----------------------------------------------------------------------------


def curl_get(curl: str, url: str, ca: Path, *options: str) -> tuple[str, int, bytes]:
    """(HTTP version, status, body) of one curl GET (no proxy, certificate verified)."""
    with tempfile.NamedTemporaryFile() as body:
        argv = [
            curl, "--silent", "--show-error", "--noproxy", "*", "--cacert", str(ca),
            "--max-time", "10", "--output", body.name,
            "--write-out", "%{http_version} %{http_code}", *options, url,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise BenchError(f"{shlex.join(argv)} failed: {done.stderr.strip()}")
        version, status = done.stdout.split()
        return version, int(status), Path(body.name).read_bytes()


def http10_closes(port: int, ca: Path) -> bytes:
    """GET over TLS with HTTP/1.0 (what ``s_time -www`` sends): the server must close after
    the response, or s_time would wait. Returns the response."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["http/1.1"])
    data = b""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(f"GET {PATH} HTTP/1.0\r\n\r\n".encode())
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            raise BenchError(f"127.0.0.1:{port} keeps an HTTP/1.0 connection open") from None
    return data


def verify(curl: str, server: Server, ca: Path) -> dict[str, object]:
    """Fail loudly unless the server sends the file over HTTP/2 on TLS 1.3 and 1.2, and
    closes an HTTP/1.0 connection after the response."""
    problems = []
    checks = {
        "h2 TLSv1.3": ["--http2", "--tlsv1.3"],
        "h2 TLSv1.2": ["--http2", "--tlsv1.2", "--tls-max", "1.2"],
    }
    head = 0
    for what, options in checks.items():
        version, status, body = curl_get(curl, server.url, ca, *options)
        if version != "2" or status != 200 or body != BODY:
            problems.append(
                f"{what}: HTTP/{version} {status} with {len(body)} bytes "
                f"({'the file' if body == BODY else 'not the file'})"
            )
    response = http10_closes(server.port, ca)
    head_end = response.find(b"\r\n\r\n")
    if not response.startswith(b"HTTP/1.") or response[head_end + 4 :] != BODY:
        problems.append(f"HTTP/1.0 over TLS: unexpected response {response[:80]!r}")
    else:
        head = head_end + 4
    if problems:
        raise BenchError(f"{server.name} fails verification: " + "; ".join(problems))
    return {"http1_head_bytes": head}


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Sample:
    test: str
    server: str
    round: int
    rate: float
    """Requests/s (h2-requests, h1-requests) or connections/s (the others)."""
    done: int
    """Requests or connections that completed."""
    seconds: float
    """The time ``rate`` is over."""
    failed: int
    server_cpu: float
    """CPU time (user+system) of the server's process group / wall time, in cores."""
    client_cpu: float
    """CPU of the load generator processes (h2load, wrk, openssl) / wall time, in cores."""
    others_cpu: float
    """CPU used by everything else (other tenants) / wall time, in cores (approximate)."""
    machine_idle: float
    wall: float
    mean_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    detail: str = ""
    """What the load generator said about the session (protocol, cipher), or reuse counts."""

    @property
    def cpu_us(self) -> float:
        """Server CPU in microseconds per request (or per connection)."""
        return 1e6 * self.server_cpu * self.wall / self.done if self.done else float("inf")


class CpuMeter:
    """CPU of the server, of the load generator (waited-for children), and of the rest."""

    def __init__(self, server: Server) -> None:
        self.pgid = server.pgid

    def __enter__(self) -> CpuMeter:
        self.server0 = cpu_seconds_by_group([self.pgid])[self.pgid]
        self.client0 = children_cpu()
        self.machine0 = machine_cpu()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = max(time.monotonic() - self.t0, 1e-9)
        self.server = (cpu_seconds_by_group([self.pgid])[self.pgid] - self.server0) / self.wall
        self.client = (children_cpu() - self.client0) / self.wall
        total, idle, _steal, tasks = (
            b - a for b, a in zip(machine_cpu(), self.machine0, strict=True)
        )
        busy = tasks / os.sysconf("SC_CLK_TCK") / self.wall
        self.others = max(0.0, busy - self.server - self.client)
        self.idle = idle / total if total else 0.0


_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_H2_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.M)
_H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)
_H2_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.M)
_H2_TRAFFIC = re.compile(r"^traffic: .*?, \S+ \((\d+)\) headers \(space savings ([\d.]+)%\)", re.M)
_H2_REQUEST_TIME = re.compile(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", re.M)
_H2_TLS = re.compile(
    r"^(?:TLS )?Protocol: (\S+)\nCipher: (\S+)(?:\nServer Temp Key: (\S+ \d+ bits))?"
    r"(?:\nApplication protocol: (\S+))?",
    re.M,
)


@dataclass(frozen=True)
class H2loadResult:
    seconds: float
    rps: float
    succeeded: int
    failed: int
    ok_2xx: int
    mean_s: float | None
    tls: str
    headers: str
    """Response header bytes per response as h2load counts them, and its HPACK savings."""


def parse_h2load(text: str) -> H2loadResult:
    finished = _H2_FINISHED.search(text)
    requests = _H2_REQUESTS.search(text)
    status = _H2_STATUS.search(text)
    if finished is None or requests is None or status is None:
        raise BenchError(f"cannot parse h2load output:\n{text}")
    mean = _H2_REQUEST_TIME.search(text)
    tls = _H2_TLS.search(text)
    traffic = _H2_TRAFFIC.search(text)
    done, succeeded = int(requests.group(3)), int(requests.group(4))
    ok_2xx = int(status.group(1))
    headers = "-"
    if traffic is not None and done:
        headers = f"{int(traffic.group(1)) / done:.0f} B of headers/response "
        headers += f"(HPACK saves {traffic.group(2)}%)"
    return H2loadResult(
        seconds=float(finished.group(1)) * _UNITS_S[finished.group(2)],
        rps=float(finished.group(3)),
        succeeded=succeeded,
        failed=done - ok_2xx,  # streams that failed, and answers other than 2xx
        ok_2xx=ok_2xx,
        mean_s=float(mean.group(1)) * _UNITS_S[mean.group(2)] if mean else None,
        tls=" ".join(g for g in tls.groups() if g) if tls else "no TLS info",
        headers=headers,
    )


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


@dataclass(frozen=True)
class Settings:
    h2load: str
    openssl: str
    duration: int
    clients: int
    streams: int
    threads: int
    batch: int
    """Connections per h2load run in h2-handshakes (each makes one request)."""
    stime_procs: int
    wrk: str
    h1_connections: int


def h2_requests_argv(
    settings: Settings, url: str, seconds: int, log_file: Path | None
) -> list[str]:
    argv = [
        settings.h2load, "-D", str(seconds), "-c", str(settings.clients),
        "-m", str(settings.streams), "-t", str(min(settings.threads, settings.clients)),
    ]  # fmt: skip
    if log_file is not None:
        argv += ["--log-file", str(log_file)]
    return [*argv, url]


def measure_h2_requests(
    settings: Settings, server: Server, round_no: int, workdir: Path, seconds: int | None = None
) -> Sample:
    """Requests/s on ``clients`` HTTP/2 connections with ``streams`` requests in flight each."""
    seconds = seconds or settings.duration
    log_file = workdir / "h2load-requests.log"
    log_file.unlink(missing_ok=True)  # h2load appends
    argv = h2_requests_argv(settings, server.url, seconds, log_file)
    with CpuMeter(server) as cpu:
        output = run_tool(argv, seconds)
    result = parse_h2load(output)
    latencies = []
    failed_in_log = 0
    with log_file.open() as rows:
        for row in rows:
            fields = row.split("\t")
            if len(fields) >= 3:
                if fields[1] == "200":
                    latencies.append(int(fields[2]))
                else:
                    failed_in_log += 1
    log_file.unlink(missing_ok=True)
    latencies.sort()
    return Sample(
        test="h2-requests",
        server=server.name,
        round=round_no,
        rate=result.rps,
        done=result.succeeded,
        seconds=result.seconds,
        failed=result.failed + failed_in_log,
        server_cpu=cpu.server,
        client_cpu=cpu.client,
        others_cpu=cpu.others,
        machine_idle=cpu.idle,
        wall=cpu.wall,
        mean_ms=1000 * result.mean_s if result.mean_s is not None else None,
        p50_ms=_percentile(latencies, 0.50) / 1000 if latencies else None,
        p99_ms=_percentile(latencies, 0.99) / 1000 if latencies else None,
        detail=f"{result.tls}; {result.headers}",
    )


def h2_handshakes_argv(settings: Settings, url: str) -> list[str]:
    batch = settings.batch
    threads = min(settings.threads, batch)
    return [settings.h2load, "-n", str(batch), "-c", str(batch), "-m", "1", "-t", str(threads), url]


def h1_requests_argv(settings: Settings, url: str, seconds: int) -> list[str]:
    connections = settings.h1_connections
    threads = min(settings.threads, connections)
    return [
        settings.wrk,
        "--latency",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        url,
    ]


def measure_h1_requests(
    settings: Settings, server: Server, round_no: int, seconds: int | None = None
) -> Sample:
    """Requests/s over HTTP/1.1 on TLS (wrk offers no ALPN): the same file and TLS as
    ``h2-requests`` without HTTP/2, to tell what HTTP/2 itself costs."""
    seconds = seconds or settings.duration
    argv = h1_requests_argv(settings, server.url, seconds)
    with CpuMeter(server) as cpu:
        output = run_tool(argv, seconds)
    rps, p50, p99, requests, errors, non_2xx = parse_wrk(output)
    return Sample(
        test="h1-requests",
        server=server.name,
        round=round_no,
        rate=rps,
        done=requests,
        seconds=float(seconds),
        failed=errors + non_2xx,
        server_cpu=cpu.server,
        client_cpu=cpu.client,
        others_cpu=cpu.others,
        machine_idle=cpu.idle,
        wall=cpu.wall,
        p50_ms=p50,
        p99_ms=p99,
        detail=f"wrk: {errors} socket errors, {non_2xx} non-2xx/3xx",
    )


def measure_h2_handshakes(
    settings: Settings, server: Server, round_no: int, seconds: int | None = None
) -> Sample:
    """New connections/s: h2load runs of ``batch`` clients making one request each (a full
    TLS handshake per connection: h2load never resumes sessions), repeated for ``seconds``.

    The rate is over h2load's own "finished in" times, so the gaps between runs (process
    start) do not count; the server's CPU per connection is over the whole wall time.
    """
    seconds = seconds or settings.duration
    argv = h2_handshakes_argv(settings, server.url)
    succeeded = failed = runs = 0
    busy = 0.0
    means: list[float] = []
    tls = ""
    deadline = time.monotonic() + seconds
    with CpuMeter(server) as cpu:
        while time.monotonic() < deadline:
            result = parse_h2load(run_tool(argv, 10))
            runs += 1
            succeeded += result.succeeded
            failed += result.failed
            busy += result.seconds
            if result.mean_s is not None:
                means.append(result.mean_s)
            tls = result.tls
    return Sample(
        test="h2-handshakes",
        server=server.name,
        round=round_no,
        rate=succeeded / busy if busy else 0.0,
        done=succeeded,
        seconds=busy,
        failed=failed,
        server_cpu=cpu.server,
        client_cpu=cpu.client,
        others_cpu=cpu.others,
        machine_idle=cpu.idle,
        wall=cpu.wall,
        mean_ms=1000 * sum(means) / len(means) if means else None,
        detail=f"{tls}; {runs} h2load runs, {succeeded / cpu.wall:,.0f} conn/s over wall time",
    )


_STIME_CONNECTIONS = re.compile(r"^(\d+) connections in ([\d.]+)s;", re.M)
_STIME_PROGRESS = re.compile(r"[*r]+")


def stime_argv(settings: Settings, server: Server, version: str, resume: bool) -> list[str]:
    return [
        settings.openssl, "s_time", "-connect", f"127.0.0.1:{server.port}",
        "-reuse" if resume else "-new", f"-tls{version}", "-time", str(settings.duration),
        "-www", PATH,
    ]  # fmt: skip


def measure_stime(
    settings: Settings, server: Server, round_no: int, workdir: Path, version: str, resume: bool
) -> Sample:
    """Connections/s of ``stime_procs`` parallel ``openssl s_time`` loops: each connection
    is a handshake (full with ``-new``; with ``-reuse`` resumed from the first one's
    session) plus an HTTP/1.0 GET of the file, read to the close.

    s_time stops at a whole-second boundary (``time(NULL)``), so it runs for ``duration``
    to ``duration + 1`` seconds: the rate is over the wall time measured here.
    """
    argv = stime_argv(settings, server, version, resume)
    test = f"tls{version.replace('_', '')}-{'resumed' if resume else 'full'}"
    # s_time prints a character per connection: into files, since reading that through
    # pipes would cost this runner CPU the servers need.
    out_paths = [workdir / f"s_time-{i}.out" for i in range(settings.stime_procs)]
    running: list[subprocess.Popen[bytes]] = []
    with CpuMeter(server) as cpu:
        try:
            for path in out_paths:
                with path.open("wb") as out:
                    running.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + settings.duration + 1 + GRACE
            for proc in running:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{shlex.join(argv)} overran by {GRACE:.0f}s") from exc
        finally:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    connections = new = reused = 0
    for proc, path in zip(running, out_paths, strict=True):
        out = path.read_text(errors="replace")
        path.unlink()
        match = _STIME_CONNECTIONS.search(out)
        if proc.returncode != 0 or match is None:
            raise BenchError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{out[-800:]}")
        connections += int(match.group(1))
        for line in out[: match.start()].splitlines():
            if _STIME_PROGRESS.fullmatch(line):  # "*" a new session, "r" a resumed one
                new += line.count("*")
                reused += line.count("r")
    if resume and reused < 0.99 * connections:
        raise BenchError(
            f"{server.name} resumed only {reused} of {connections} sessions ({test}): "
            "the resumption test would measure full handshakes"
        )
    return Sample(
        test=test,
        server=server.name,
        round=round_no,
        rate=connections / cpu.wall,
        done=connections,
        seconds=cpu.wall,
        failed=0,
        server_cpu=cpu.server,
        client_cpu=cpu.client,
        others_cpu=cpu.others,
        machine_idle=cpu.idle,
        wall=cpu.wall,
        detail=f"{new} full, {reused} resumed",
    )


@dataclass(frozen=True)
class Test:
    name: str
    unit: str
    description: str
    measure: Callable[[Settings, Server, int, Path], Sample]


def tests(tls12: bool) -> list[Test]:
    chosen = [
        Test(
            "h2-requests",
            "req/s",
            "HTTP/2 requests/s: h2load -D S -c 16 -m 10 -t 2 (16 connections, 10 streams each)",
            lambda s, srv, n, wd: measure_h2_requests(s, srv, n, wd),
        ),
        Test(
            "h1-requests",
            "req/s",
            "HTTP/1.1 over TLS 1.3, requests/s: wrk -t 2 -c 64 (keep-alive, one request in "
            "flight per connection); the control for h2-requests",
            lambda s, srv, n, _wd: measure_h1_requests(s, srv, n),
        ),
        Test(
            "h2-handshakes",
            "conn/s",
            "new TLS 1.3 connections/s, each a full handshake + HTTP/2 + one request "
            "(h2load -n C -c C -m 1, repeated)",
            lambda s, srv, n, _wd: measure_h2_handshakes(s, srv, n),
        ),
    ]
    for version in ("1_3", "1_2") if tls12 else ("1_3",):
        label = "TLS " + version.replace("_", ".")
        for resume in (False, True):
            kind = "resumed (session ticket)" if resume else "full"
            chosen.append(
                Test(
                    f"tls{version.replace('_', '')}-{'resumed' if resume else 'full'}",
                    "conn/s",
                    f"{label} {kind} handshakes/s + one HTTP/1.0 GET each (openssl s_time)",
                    lambda s, srv, n, wd, v=version, r=resume: measure_stime(s, srv, n, wd, v, r),
                )
            )
    return chosen


# -- results ----------------------------------------------------------------------------------


@dataclass
class TestResult:
    test: Test
    samples: list[Sample] = field(default_factory=list)

    def best(self, server: str) -> Sample:
        return max((s for s in self.samples if s.server == server), key=lambda s: s.rate)

    @property
    def ratio(self) -> float:
        nginx = self.best("nginx").rate
        return self.best("bext").rate / nginx if nginx else float("inf")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def summary_table(results: Sequence[TestResult]) -> str:
    lines = [
        "| test | unit | nginx | bext | **bext/nginx** | server CPU µs per unit nginx / bext "
        "| CPU bext/nginx | latency nginx / bext | other load nginx / bext |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for result in results:
        nginx, bext = result.best("nginx"), result.best("bext")
        flags = "" if nginx.failed == 0 and bext.failed == 0 else " ⚠ failures"
        parts = [
            f"{label} {_ms(getattr(nginx, key))} / {_ms(getattr(bext, key))}"
            for label, key in (("mean", "mean_ms"), ("p50", "p50_ms"), ("p99", "p99_ms"))
            if getattr(nginx, key) is not None and getattr(bext, key) is not None
        ]
        latency = ", ".join(parts) or "-"
        lines.append(
            f"| {result.test.name}{flags} | {result.test.unit} | {nginx.rate:,.0f} "
            f"| {bext.rate:,.0f} | **{result.ratio:.2f}** "
            f"| {nginx.cpu_us:,.0f} / {bext.cpu_us:,.0f} | {bext.cpu_us / nginx.cpu_us:.1f}x "
            f"| {latency} "
            f"| {nginx.others_cpu:.2f} / {bext.others_cpu:.2f} |"
        )
    return "\n".join(lines)


def rounds_table(results: Sequence[TestResult]) -> str:
    lines = [
        f"  {'test':<14} {'round':>5} {'server':<6} {'rate':>9} {'done':>8} {'srv CPU':>7} "
        f"{'µs/unit':>8} {'client':>6} {'others':>6} {'idle':>5} {'p99':>9}  failed  detail"
    ]
    for result in results:
        for s in result.samples:
            lines.append(
                f"  {s.test:<14} {s.round:>5} {s.server:<6} {s.rate:>9,.0f} {s.done:>8} "
                f"{s.server_cpu:>7.2f} {s.cpu_us:>8.1f} {s.client_cpu:>6.2f} "
                f"{s.others_cpu:>6.2f} {s.machine_idle:>5.0%} {_ms(s.p99_ms):>9}  "
                f"{s.failed:>6}  {s.detail}"
            )
    return "\n".join(lines)


def environment(tools: dict[str, str], python: str) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, platform, ssl\n"
        "def v(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return 'missing'\n"
        "print(f'Python {platform.python_version()} ({ssl.OPENSSL_VERSION}), "
        'uvloop {v("uvloop")}, ngh2 {v("ngh2")}, h2 {v("h2")}, hpack {v("hpack")}, '
        'hyperframe {v("hyperframe")}\')'
    )
    done = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpus_usable": str(len(os.sched_getaffinity(0))),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "nginx": version_of([tools["nginx"], "-V"], r"nginx/(\S+)")
        + " ("
        + version_of([tools["nginx"], "-V"], r"built with (OpenSSL \S+)")
        + ")",
        "h2load": version_of([tools["h2load"], "--version"], r"h2load (\S+)"),
        "wrk": version_of([tools["wrk"], "-v"], r"wrk (\S+)"),
        "openssl": version_of([tools["openssl"], "version"], r"(OpenSSL \S+)"),
        "curl": version_of([tools["curl"], "--version"], r"curl (\S+)"),
        "bext": version_of([python, "-m", "bext", "--version"], r"bext (\S+)"),
        "bext_git": version_of(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], r"(\S+)"
        ),
        "bext_runtime": done.stdout.strip() if done.returncode == 0 else "unknown",
    }


def markdown(
    results: Sequence[TestResult],
    env: dict[str, str],
    command: str,
    settings: Settings,
    rounds: int,
    workers: int,
    key_type: str,
) -> str:
    described = "\n".join(f"- `{r.test.name}`: {r.test.description}" for r in results)
    h2 = [r for r in results if r.test.name.startswith("h2-")]
    tls_info = "; ".join(f"{name} {h2[0].best(name).detail}" for name in SERVERS) if h2 else "-"
    return f"""\
### {env["date"]}: TLS/HTTP/2, {settings.duration} s x {rounds} rounds

`{command}`

Machine: nproc {env["nproc"]} ({env["cpus_usable"]} usable), shared with other tenants, \
load average at start {env["loadavg_at_start"]}; nginx and bext {workers} workers each, \
{key_type.upper()} certificate.
Versions: nginx {env["nginx"]}, h2load {env["h2load"]}, wrk {env["wrk"]}, \
{env["openssl"]} (s_time), \
curl {env["curl"]}, bext {env["bext"]} at {env["bext_git"]} ({env["bext_runtime"]}).
Negotiated by h2load: {tls_info}.

{summary_table(results)}

Best of {rounds} alternating rounds per server (nginx, bext, nginx, bext, ...). Ratios above
1 mean bext is faster. "server CPU µs per unit" is the server's user+system CPU time per
request (h2-requests, h1-requests) or per connection (the others) in the best round;
"other load" is the CPU, in cores, used meanwhile by everything but the server and the load
generator.

Load generators: `{shlex.join(h2_requests_argv(settings, "URL", settings.duration, None))}`;
`{shlex.join(h1_requests_argv(settings, "URL", settings.duration))}`;
`{shlex.join(h2_handshakes_argv(settings, "URL"))}` repeated for {settings.duration} s;
{settings.stime_procs} x `openssl s_time -connect 127.0.0.1:PORT -new|-reuse -tls1_3|-tls1_2 \
-time {settings.duration} -www {PATH}` at once.

{described}
"""


# -- profiling --------------------------------------------------------------------------------


_UVLOOP_C = ("loop.c", "core.c", "linux.c", "stream.c", "uv-common.c", "poll.c", "timer.c")


def package_of(frame: str) -> str:
    """Where a py-spy frame's code lives: a package (``h2``, ``hpack``, ``asyncio``, ``bext``),
    a module py-spy names without its directory, a native library, uvloop's C code, or
    CPython's."""
    parsed = parse_frame(frame)
    path = parsed.file
    if not path:
        return parsed.func
    if ".so" in path:
        return path
    if path.endswith((".c", ".h")):
        return "uvloop/libuv (C)" if path in _UVLOOP_C else "CPython (C)"
    if "/" in path:
        return path.split("/", 1)[0]
    return path


def profile_bext(
    bext: Server,
    settings: Settings,
    test: str,
    py_spy: str,
    outdir: Path,
    native: bool,
) -> dict[str, object]:
    """Load bext as in ``test`` while py-spy samples its first worker for 5 s."""
    workers = children_of(bext.process.pid)
    if not workers:
        raise BenchError("bext has no worker processes to profile")
    seconds = max(3, min(5, settings.duration))
    rate = 50 if native else 100
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / f"{test}-worker{'-native' if native else ''}.txt"
    spy_argv = [
        py_spy, "record", "-d", str(seconds), "-r", str(rate), "-p", str(workers[0]),
        "-o", str(out), "--format", "raw", *(["--native"] if native else []),
    ]  # fmt: skip
    load_seconds = seconds + 3
    if test == "h2-requests":
        load_argv = h2_requests_argv(settings, bext.url, load_seconds, None)
    else:  # h2-handshakes: a shell-free loop of h2load runs, in a child Python
        loop = (
            "import subprocess, sys, time\n"
            f"end = time.monotonic() + {load_seconds}\n"
            "while time.monotonic() < end:\n"
            "    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, timeout=30)\n"
        )
        load_argv = [sys.executable, "-c", loop, *h2_handshakes_argv(settings, bext.url)]
    load = subprocess.Popen(load_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        spy = subprocess.run(
            spy_argv, capture_output=True, text=True, timeout=seconds + GRACE, check=False
        )
    finally:
        try:
            load.wait(load_seconds + GRACE)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
    if spy.returncode != 0 or not out.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}):\n{spy.stderr.strip()}")
    summary = summarise_file(out)
    with out.open(encoding="utf-8", errors="replace") as f:
        stacks = parse_raw(f)
    packages: Counter[str] = Counter()
    for frames, n in stacks:
        packages[package_of(frames[-1])] += n
    total = max(1, sum(packages.values()))
    idle = sum(n for frames, n in stacks if "epoll_wait" in frames[-1])
    busy = 100.0 * (summary.total - idle) / (rate * seconds)
    print(
        f"\n== profile of bext worker {workers[0]} under {test} load, {seconds}s at {rate} Hz"
        f"{' (native)' if native else ''} ({out}); busy ~{busy:.0f}% of wall time =="
    )
    print("self time by package / module:")
    for name, n in packages.most_common(20):
        print(f"  {100.0 * n / total:5.1f}%  {n:6d}  {name}")
    print(summary.render(25))
    return {
        "file": str(out),
        "test": test,
        "native": native,
        "busy_percent": round(busy, 1),
        "packages": [
            {"name": name, "percent": round(100.0 * n / total, 1)}
            for name, n in packages.most_common(20)
        ],
        **summary.as_dict(25),
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark bext against nginx over TLS and HTTP/2 (same machine, same run)."
    )
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per measurement (default 5)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per server [2]")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of unmeasured h2 load per server [1]"
    )
    parser.add_argument("--workers", type=int, default=2, help="workers of each server [2]")
    parser.add_argument("--clients", type=int, default=16, help="h2-requests: h2load -c [16]")
    parser.add_argument("--h1-connections", type=int, default=64, help="h1-requests: wrk -c [64]")
    parser.add_argument("--streams", type=int, default=10, help="h2-requests: h2load -m [10]")
    parser.add_argument("--threads", type=int, default=2, help="h2load -t [2]")
    parser.add_argument(
        "--batch",
        type=int,
        default=64,
        help="h2-handshakes: connections (one request each) per h2load run [64]",
    )
    parser.add_argument(
        "--stime-procs",
        type=int,
        default=4,
        help="tls*-full/resumed: openssl s_time processes at once [4]",
    )
    parser.add_argument(
        "--tls12",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure TLS 1.2 handshakes (default: yes)",
    )
    parser.add_argument(
        "--test",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="measure only these tests (h2-requests h2-handshakes tls13-full ...)",
    )
    parser.add_argument(
        "--key-type", choices=("ecdsa", "rsa"), default="ecdsa", help="certificate key [ecdsa]"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write all results as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring, py-spy one bext worker under h2-requests and h2-handshakes load",
    )
    parser.add_argument(
        "--profile-native", action="store_true", help="with --profile: also record C frames"
    )
    parser.add_argument("--nginx", help="nginx binary [/usr/sbin/nginx, then PATH]")
    parser.add_argument("--h2load", help="h2load binary [PATH]")
    parser.add_argument("--wrk", help="wrk binary, for h1-requests [PATH]")
    parser.add_argument("--openssl", help="openssl binary [PATH]")
    parser.add_argument("--curl", help="curl binary [PATH]")
    parser.add_argument("--python", help="Python that runs bext [.venv/bin/python]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    names = ("duration", "rounds", "workers", "clients", "streams", "threads", "batch")
    for name in (*names, "h1_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.stime_procs < 1:
        parser.error("--stime-procs must be at least 1")
    if args.duration > 30:
        parser.error("--duration is at most 30 (seconds per measurement)")
    return args


def run(args: argparse.Namespace, argv: list[str]) -> int:
    tools = {
        "nginx": find_tool(args.nginx, "/usr/sbin/nginx", "nginx"),
        "h2load": find_tool(args.h2load, "h2load"),
        "wrk": find_tool(args.wrk, "wrk"),
        "openssl": find_tool(args.openssl, "openssl"),
        "curl": find_tool(args.curl, "curl"),
    }
    python = find_tool(args.python, str(REPO / ".venv" / "bin" / "python"), "python3")
    py_spy = None
    if args.profile:
        py_spy = find_tool(None, str(Path(python).with_name("py-spy")), "py-spy")
    settings = Settings(
        h2load=tools["h2load"],
        openssl=tools["openssl"],
        duration=args.duration,
        clients=args.clients,
        streams=args.streams,
        threads=args.threads,
        batch=args.batch,
        stime_procs=args.stime_procs,
        wrk=tools["wrk"],
        h1_connections=args.h1_connections,
    )
    selected = tests(args.tls12)
    if args.test:
        known = {t.name for t in selected}
        unknown = [name for name in args.test if name not in known]
        if unknown:
            raise BenchError(f"unknown test {', '.join(unknown)}; known: {', '.join(known)}")
        selected = [t for t in selected if t.name in args.test]
    env = environment(tools, python)

    procs = Processes()
    atexit.register(procs.stop)
    workdir = Path(tempfile.mkdtemp(prefix="bext-bench-tls-"))
    workdir.chmod(0o755)  # nginx workers may run as another user when started by root
    results = [TestResult(t) for t in selected]
    probes: dict[str, object] = {}
    profiles: dict[str, object] = {}
    try:
        files = make_files(workdir, args.key_type)
        servers = [
            start_nginx(procs, tools["nginx"], workdir, args.workers, files),
            start_bext(procs, python, workdir, args.workers, files),
        ]
        log(
            ", ".join(f"{s.name} {s.url} (pid {s.pgid})" for s in servers) + f"; work dir {workdir}"
        )
        for server in servers:
            probes[server.name] = verify(tools["curl"], server, files.ca)
        log("verified: both send the 1 KiB file over h2 (TLS 1.3, TLS 1.2) and HTTP/1.0")
        if args.warmup:
            for server in servers:
                measure_h2_requests(settings, server, 0, workdir, args.warmup)
        for round_no in range(1, args.rounds + 1):
            for result in results:
                for server in servers:
                    sample = result.test.measure(settings, server, round_no, workdir)
                    result.samples.append(sample)
                    log(
                        f"   round {round_no} {result.test.name:<14} {server.name:<6}"
                        f"{sample.rate:>10,.0f} {result.test.unit:<6} "
                        f"{sample.cpu_us:>8.1f} µs CPU/unit  p99 {_ms(sample.p99_ms)}"
                        f"  others {sample.others_cpu:.2f}"
                        + (f"  FAILED {sample.failed}" if sample.failed else "")
                    )
        if py_spy is not None:
            bext = servers[1]
            for test in ("h2-requests", "h2-handshakes"):
                for native in (False, True) if args.profile_native else (False,):
                    key = test + (" (native)" if native else "")
                    profiles[key] = profile_bext(bext, settings, test, py_spy, args.profile, native)
    finally:
        procs.stop()
        if args.keep:
            log(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    command = command_line(argv)
    print("\nevery round:")
    print(rounds_table(results))
    print()
    print(summary_table(results))
    print("\n---- markdown for bench/RESULTS.md ----\n")
    snippet = markdown(results, env, command, settings, args.rounds, args.workers, args.key_type)
    print(snippet)
    if args.json:
        document = {
            "command": command,
            "environment": env,
            "settings": {
                **{
                    k: v
                    for k, v in asdict(settings).items()
                    if k not in ("h2load", "openssl", "wrk")
                },
                "rounds": args.rounds,
                "workers": args.workers,
                "key_type": args.key_type,
            },
            "probes": probes,
            "tests": [
                {
                    "name": r.test.name,
                    "unit": r.test.unit,
                    "description": r.test.description,
                    "samples": [{**asdict(s), "cpu_us": s.cpu_us} for s in r.samples],
                    "best": {name: r.best(name).round for name in SERVERS},
                    "ratio": r.ratio,
                }
                for r in results
            ],
            "profiles": profiles,
            "markdown": snippet,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench/tls.py", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
