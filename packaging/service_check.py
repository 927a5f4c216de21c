#!/usr/bin/env python3
"""Run the installed bext the way bext.service does, without systemd (scripts/deb-test.sh).

As root, after `apt-get install ./dist/bext_*.deb`:

    python3 packaging/service_check.py --deb dist/bext_VERSION_amd64.deb

It plays systemd's part: a NOTIFY_SOCKET (a datagram socket that records each message's
sender pid), WATCHDOG_USEC, $RUNTIME_DIRECTORY=/run/bext and the other directory
variables, umask 027, cwd /, a clean environment, and it starts
`bext run -c /etc/bext/bext.config.toml` as the bext user with CAP_NET_BIND_SERVICE as
an ambient capability (setpriv), on port 80 as configured. Then, step by step:

  READY=1 from the master; the welcome page over IPv4 and IPv6; WATCHDOG=1;
  SIGHUP -> RELOADING=1 (+MONOTONIC_USEC) -> READY=1;
  `bext reload` as the bext user (ExecReload) -> exit 0, RELOADING=1 -> READY=1;
  an invalid file -> `bext reload` exits 78 and the old configuration keeps serving;
  `bext status` from a root login shell ($XDG_RUNTIME_DIR=/run/user/0);
  logrotate (or mv + SIGUSR1) -> the workers write to the new access.log;
  `dpkg -i` of the same .deb while two clients keep requesting -> postinst's binary
  upgrade: MAINPID= + READY=1 from the new master, the old one exits 0, no request fails;
  SIGTERM -> STOPPING=1, exit 0, no process of the bext user left.

This process is a child subreaper, so the new master of the binary upgrade (a child of
the old master) becomes its child when the old master exits and its exit status can be
checked. On failure it kills the masters it started and their workers, by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = Path("/etc/bext/bext.config.toml")
BEXT = "/usr/bin/bext"
PR_SET_CHILD_SUBREAPER = 36
CAP_NET_BIND_SERVICE = 10
EX_CONFIG = 78


class CheckFailed(Exception):
    pass


def step(name: str) -> None:
    print(f"--- {name}", flush=True)


def ok(text: str) -> None:
    print(f"    ok: {text}", flush=True)


def check(condition: object, text: str) -> None:
    if not condition:
        raise CheckFailed(text)
    ok(text)


@dataclass
class Message:
    pid: int
    fields: dict[str, str]


@dataclass
class NotifySocket:
    """systemd's side of sd_notify: one datagram per message, sender pid from SCM_CREDENTIALS."""

    path: Path
    messages: list[Message] = field(default_factory=list)
    seen: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # the bext user sends to it

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return False
        pid = 0
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(Message(pid, fields))
        shown = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "STATUS")
        print(f"    notify from {pid}: {shown}", flush=True)
        return True

    def expect(self, what: str, test: Callable[[Message], bool], timeout: float) -> Message:
        """The next unseen message passing `test` (earlier unseen ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.seen < len(self.messages):
                message = self.messages[self.seen]
                self.seen += 1
                if test(message):
                    ok(f"{what} (from pid {message.pid})")
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed(f"no {what} within {timeout:.0f} s")
            self._receive(left)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    def close(self) -> None:
        self.sock.close()


def has(key: str, value: str | None = None) -> Callable[[Message], bool]:
    return lambda m: key in m.fields and (value is None or m.fields[key] == value)


def http_get(port: int, path: str = "/", host: str = "127.0.0.1") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Load:
    """Two clients requesting until stopped: one on fresh connections, one keep-alive."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._fresh, daemon=True),
            threading.Thread(target=self._keepalive, daemon=True),
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def _record(self, status: int, body: bytes | str, how: str) -> None:
        if status == 200 and "Welcome to bext" in str(body):
            self.done += 1
        else:
            self.failures.append(f"{how}: status {status}")

    def _fresh(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = http_get(self.port, "/load-fresh")
                self._record(status, body, "fresh connection")
            except OSError as exc:
                self.failures.append(f"fresh connection: {exc!r}")
            time.sleep(0.005)

    def _keepalive(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/load-keepalive")
                response = conn.getresponse()
                self._record(response.status, response.read(), "keep-alive")
                if response.will_close:  # a draining worker says Connection: close
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"keep-alive: {exc!r}")
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()


def has_cap(name_bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> name_bit & 1)
    return False


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
    return pids


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def wait_exit(pid: int, timeout: float) -> int | None:
    """Exit code of our child (or adopted orphan) `pid`, None if still running at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def as_bext(user: pwd.struct_passwd, caps: bool) -> list[str]:
    argv = [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--no-new-privs",
    ]
    if caps:
        argv += ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
    return [*argv, "--"]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print(f"    $ {' '.join(argv)}", flush=True)
    result = subprocess.run(argv, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    for line in (result.stdout + result.stderr).splitlines():
        print(f"      {line}", flush=True)
    return result  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", type=Path, required=True, help="the .deb to reinstall (upgrade)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("service_check.py must run as root", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("cannot become a child subreaper", file=sys.stderr)
        return 1

    user = pwd.getpwnam("bext")
    original_config = CONFIG.read_bytes()
    caps = has_cap(CAP_NET_BIND_SERVICE)
    port = 80
    if not caps or not port_free(80):
        # Without the capability (or with port 80 taken) use a high port: the same test,
        # minus the privileged bind. The conffile is restored at the end.
        port = 18080
        CONFIG.write_text(original_config.decode().replace("port = 80 ", f"port = {port} ", 1))
        print(
            f"note: {'port 80 is taken' if caps else 'no CAP_NET_BIND_SERVICE'}: "
            f"testing on port {port}",
            flush=True,
        )

    tmp = Path(tempfile.mkdtemp(prefix="bext-service-check."))
    os.chmod(tmp, 0o755)
    notify = NotifySocket(tmp / "notify.sock")
    run_dir = Path("/run/bext")  # what RuntimeDirectory=bext makes
    # A root-run bext may have made it for its own control sockets: put that back after.
    run_dir_before = run_dir.stat() if run_dir.is_dir() else None
    run_dir.mkdir(mode=0o755, exist_ok=True)
    os.chown(run_dir, user.pw_uid, user.pw_gid)
    run_dir.chmod(0o755)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/var/lib/bext",
        "USER": "bext",
        "LOGNAME": "bext",
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "RUNTIME_DIRECTORY": "/run/bext",
        "STATE_DIRECTORY": "/var/lib/bext",
        "CACHE_DIRECTORY": "/var/cache/bext",
        "LOGS_DIRECTORY": "/var/log/bext",
    }
    masters: list[int] = []
    master: subprocess.Popen[bytes] | None = None
    try:
        step(f"start: bext run -c {CONFIG} as bext (port {port}, ambient CAP_NET_BIND_SERVICE)")
        master = subprocess.Popen(
            [*as_bext(user, caps), BEXT, "run", "-c", str(CONFIG)],
            env=env,
            cwd="/",
            umask=0o027,
            stdin=subprocess.DEVNULL,
        )
        old = master.pid
        masters.append(old)
        notify.expect("READY=1", lambda m: m.pid == old and has("READY", "1")(m), 30)

        step("a request served: the welcome page")
        curl = shutil.which("curl")
        if curl:
            url = f"http://127.0.0.1:{port}/"
            page = subprocess.run(
                [curl, "-fsS", "-w", "\n%{http_code}", url], capture_output=True, text=True
            )
            served = page.returncode == 0 and "Welcome to bext" in page.stdout
            check(served and page.stdout.endswith("\n200"), f"curl {url}: 200, the welcome page")
        status, body = http_get(port)
        check(status == 200 and "Welcome to bext" in body, f"GET / on 127.0.0.1:{port} -> 200")
        if socket.has_ipv6 and Path("/proc/net/if_inet6").exists():
            status, body = http_get(port, host="::1")
            check(status == 200 and "Welcome to bext" in body, f"GET / on [::1]:{port} -> 200")
        notify.expect("WATCHDOG=1", has("WATCHDOG", "1"), 5)

        step("SIGHUP -> RELOADING=1, then READY=1")
        os.kill(old, signal.SIGHUP)
        notify.expect(
            "RELOADING=1 with MONOTONIC_USEC",
            lambda m: has("RELOADING", "1")(m) and "MONOTONIC_USEC" in m.fields,
            15,
        )
        notify.expect("READY=1", has("READY", "1"), 30)
        check(http_get(port)[0] == 200, "served after the reload")

        step("ExecReload: `bext reload` as the bext user")
        reload_env = {"PATH": env["PATH"], "RUNTIME_DIRECTORY": "/run/bext", "LANG": "C.UTF-8"}
        result = run([*as_bext(user, False), BEXT, "reload", "-c", str(CONFIG)], env=reload_env)
        check(result.returncode == 0, "bext reload exits 0")
        notify.expect("RELOADING=1", has("RELOADING", "1"), 15)
        notify.expect("READY=1", has("READY", "1"), 30)

        step("an invalid configuration is refused; the old one keeps serving")
        good = CONFIG.read_bytes()
        CONFIG.write_bytes(good.replace(b'level = "info"', b'level = "chatty"', 1))
        try:
            result = run([*as_bext(user, False), BEXT, "reload", "-c", str(CONFIG)], env=reload_env)
        finally:
            CONFIG.write_bytes(good)
        check(
            result.returncode == EX_CONFIG and "log.level" in result.stderr,
            "bext reload exits 78 and names log.level",
        )
        check(http_get(port)[0] == 200, "still served")

        step("bext status from a root login shell (XDG_RUNTIME_DIR=/run/user/0)")
        root_env = {"PATH": env["PATH"], "XDG_RUNTIME_DIR": "/run/user/0", "LANG": "C.UTF-8"}
        result = run([BEXT, "status", "-c", str(CONFIG)], env=root_env)
        check(
            result.returncode == 0 and f"master {old}" in result.stdout,
            "bext status finds the master",
        )

        step("log rotation: SIGUSR1 reopens the access log")
        access = Path("/var/log/bext/access.log")
        check(
            access.exists() and access.stat().st_uid == user.pw_uid,
            f"{access} exists, owned by bext",
        )
        logrotate = shutil.which("logrotate")
        if logrotate:
            result = run(
                [logrotate, "-f", "-s", str(tmp / "logrotate.state"), "/etc/logrotate.d/bext"]
            )
            check(result.returncode == 0, "logrotate -f /etc/logrotate.d/bext")
        else:
            print("    (logrotate is not installed: mv + SIGUSR1 to the pidfile's pid)")
            access.rename(access.with_name("access.log.1"))
            os.kill(int(Path("/run/bext/bext.pid").read_text()), signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            http_get(port, "/after-rotation")
            if access.exists() and "/after-rotation" in access.read_text():
                break
            time.sleep(0.2)
        check(
            "/after-rotation" in (access.read_text() if access.exists() else ""),
            "requests after the rotation go to the new access.log",
        )
        rotated = access.with_name("access.log.1")
        size = rotated.stat().st_size
        http_get(port, "/after-rotation-2")
        deadline = time.monotonic() + 5  # workers flush their access log once a second
        while time.monotonic() < deadline and "/after-rotation-2" not in access.read_text():
            time.sleep(0.1)
        check(
            rotated.stat().st_size == size and "/after-rotation-2" in access.read_text(),
            "the rotated file gets no more lines",
        )

        step(f"package upgrade under load: dpkg -i {args.deb.name} (postinst: binary upgrade)")
        with Load(port) as load:
            time.sleep(0.5)
            result = run(
                ["dpkg", "--force-confdef", "--force-confold", "-i", str(args.deb)],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            check(result.returncode == 0, "dpkg -i succeeds")
            upgraded = notify.expect(
                "MAINPID= + READY=1 from the new master",
                lambda m: "MAINPID" in m.fields and m.pid != old,
                30,
            )
            new = upgraded.pid
            masters.append(new)
            check(
                upgraded.fields["MAINPID"] == str(new) and upgraded.fields.get("READY") == "1",
                f"MAINPID={new} READY=1",
            )
            code = master.wait(45)
            check(code == 0, f"the old master {old} drained and exited 0")
            time.sleep(1.0)
        check(
            load.done > 50 and not load.failures,
            f"{load.done} requests during the upgrade, failures: {load.failures[:5]}",
        )
        notify.drain(0.5)
        # systemd takes STOPPING=1 from any process of the unit (NotifyAccess=all), even
        # after MAINPID= moved on: the retired master must not send it, or bext.service
        # would turn 'deactivating' and the new master be killed after TimeoutStopSec.
        check(
            not any(m.pid == old and "STOPPING" in m.fields for m in notify.messages),
            f"no STOPPING=1 from the retired master {old}",
        )
        result = run([BEXT, "status", "-c", str(CONFIG)])
        check(
            result.returncode == 0 and f"master {new}" in result.stdout,
            f"bext status: master {new}",
        )
        check(http_get(port)[0] == 200, "the new master serves")

        step("SIGTERM -> STOPPING=1, exit 0")
        os.kill(new, signal.SIGTERM)
        notify.expect("STOPPING=1", lambda m: m.pid == new and has("STOPPING", "1")(m), 10)
        stopped = wait_exit(new, 45)
        check(stopped == 0, f"master {new} exited 0")
        masters.clear()
        time.sleep(0.2)
        left = processes_of(user.pw_uid)
        check(not left, f"no process of the bext user left {left}")
        return 0
    except (CheckFailed, subprocess.TimeoutExpired, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for pid in masters:  # only what this script started: the masters and their workers
            for child in children_of(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                wait_exit(pid, 5)
        if master is not None and master.poll() is None:
            master.kill()
            master.wait(5)
        notify.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if CONFIG.read_bytes() != original_config:
            CONFIG.write_bytes(original_config)
        if run_dir_before is not None:
            os.chown(run_dir, run_dir_before.st_uid, run_dir_before.st_gid)
            run_dir.chmod(run_dir_before.st_mode & 0o7777)


if __name__ == "__main__":
    raise SystemExit(main())
