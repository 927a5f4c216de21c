"""Active upstream health checks: one prober in the master, not one per worker.

Each enabled ``[upstreams.NAME.health]`` server is probed every ``interval`` with
``GET <path>`` over a fresh connection, with ``Host: <host>`` (see :func:`probe_host`);
a status within ``expect_status`` within ``timeout`` is a success. ``rise`` successes in a
row mark a server up, ``fall`` failures down; the verdict goes into the shared health table
that every worker's balancer reads. The master loop is single-threaded and blocking, so
probes are small non-blocking state machines whose sockets join the loop's ``select``.

When every checked server of an upstream is down, workers send requests to them anyway
(fail open, :mod:`bext.proxy.balancer`): the prober says so loudly, once when it happens
and once when a server passes again, because the usual cause is a probe that cannot pass
(a ``Host`` the app refuses, a path that needs a login) rather than a dead app.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Collection

from bext.config import Config
from bext.config.schema import HealthConfig, UpstreamConfig, UpstreamServer
from bext.shm.health import DOWN, UNTIL_MS, UP, HealthEntry, server_key
from bext.shm.layout import Segment

log = logging.getLogger("bext")

MAX_RESPONSE_HEAD = 8192


class _Target:
    """One server under watch and its probe in flight, if any."""

    def __init__(self, upstream: str, server: UpstreamServer, health: HealthConfig,
                 entry: HealthEntry, host: str) -> None:  # fmt: skip
        self.upstream = upstream
        self.server = server
        self.health = health
        self.entry = entry
        self.successes = 0
        self.failures = 0
        self.next_at = 0.0
        self.sock: socket.socket | None = None
        self.deadline = 0.0
        self.connected = False
        self.received = b""
        self.host = host
        self.request = (
            f"GET {health.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bext-health-check\r\n"
            "Connection: close\r\n\r\n"
        ).encode()

    @property
    def label(self) -> str:
        return f"upstream {self.upstream} server {self.server.url}"


def probe_host(config: Config, upstream: UpstreamConfig) -> str:
    """The ``Host`` of ``upstream``'s probes: ``health.host`` if set, else the host of the
    first route rule that proxies to it and names one, else ``localhost``.

    A wildcard rule host (``*.example.com``) gives the name after ``*.``. Apps check the
    host (Django's ``ALLOWED_HOSTS``), so a probe should look like a request they serve.
    """
    if upstream.health.host is not None:
        return upstream.health.host
    for rule in config.route_rules:
        if rule.proxy == upstream.name and rule.host:
            return rule.host.removeprefix("*.")
    return "localhost"


def config_keys(config: Config) -> set[int]:
    """The health-table keys of every upstream server ``config`` names."""
    return {server_key(u.name, s.url) for u in config.upstreams for s in u.servers}


class HealthChecker:
    def __init__(self, config: Config, segment: Segment) -> None:
        self.targets: list[_Target] = []
        self.failing_open: set[str] = set()
        """Upstreams whose checked servers are all down: requests still go to them."""
        for upstream in config.upstreams:
            host = probe_host(config, upstream)
            for server in upstream.servers:
                # Claimed here, before any worker forks, so workers only ever look up.
                entry = HealthEntry(segment, server_key(upstream.name, server.url))
                if upstream.health.enabled:
                    self.targets.append(
                        _Target(upstream.name, server, upstream.health, entry, host)
                    )

    # -- what the master loop asks ------------------------------------------------------

    def select_sets(self) -> tuple[list[int], list[int]]:
        """Descriptors of probes waiting to read (answer) and to write (connect)."""
        readers: list[int] = []
        writers: list[int] = []
        for target in self.targets:
            if target.sock is not None:
                (readers if target.connected else writers).append(target.sock.fileno())
        return readers, writers

    def next_timeout(self, now: float) -> float:
        soonest = 1.0
        for target in self.targets:
            when = target.deadline if target.sock is not None else target.next_at
            soonest = min(soonest, max(when - now, 0.0))
        return soonest

    def run(self, readable: Collection[int], writable: Collection[int]) -> None:
        """Advance every probe: start due ones, progress ready ones, expire slow ones."""
        now = time.monotonic()
        for target in self.targets:
            sock = target.sock
            if sock is None:
                if now >= target.next_at:
                    self._start(target, now)
                continue
            fd = sock.fileno()
            if fd in writable:
                self._on_connected(target)
            elif fd in readable:
                self._on_readable(target)
            elif now >= target.deadline:
                self._finish(target, False, f"no answer within {target.health.timeout:g}s")

    def report(self) -> list[dict[str, object]]:
        """The checked servers and their state, for ``bext status``."""
        names = {0: "unknown", UP: "up", DOWN: "down"}
        return [
            {"upstream": t.upstream, "server": t.server.url, "state": names[t.entry.state]}
            for t in self.targets
        ]

    def close(self) -> None:
        for target in self.targets:
            if target.sock is not None:
                target.sock.close()
                target.sock = None

    # -- one probe ----------------------------------------------------------------------

    def _start(self, target: _Target, now: float) -> None:
        server = target.server
        if server.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = str(server.unix_path)
        else:
            assert server.host is not None and server.port is not None
            family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            address = (server.host, server.port)
        sock.setblocking(False)
        target.sock = sock
        target.deadline = now + target.health.timeout
        target.connected = False
        target.received = b""
        code = sock.connect_ex(address)  # type: ignore[arg-type]
        if code == 0:
            self._on_connected(target)
        elif code not in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            self._finish(target, False, f"connect failed: {errno.errorcode.get(code, code)}")

    def _on_connected(self, target: _Target) -> None:
        sock = target.sock
        assert sock is not None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._finish(target, False, f"connect failed: {errno.errorcode.get(code, code)}")
            return
        try:
            sock.send(target.request)  # tiny: fits in an empty socket buffer
        except OSError as exc:
            self._finish(target, False, f"send failed: {exc.strerror or exc}")
            return
        target.connected = True

    def _on_readable(self, target: _Target) -> None:
        sock = target.sock
        assert sock is not None
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(target, False, f"read failed: {exc.strerror or exc}")
            return
        target.received += data
        line_end = target.received.find(b"\r\n")
        if line_end < 0:
            if not data or len(target.received) > MAX_RESPONSE_HEAD:
                self._finish(target, False, "no valid response")
            return
        parts = target.received[:line_end].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._finish(target, False, "no valid response")
            return
        status = int(parts[1])
        low, high = target.health.expect_status
        self._finish(target, low <= status <= high, f"status {status}")

    def _finish(self, target: _Target, ok: bool, detail: str) -> None:
        if target.sock is not None:
            target.sock.close()
            target.sock = None
        health = target.health
        target.next_at = time.monotonic() + health.interval
        entry = target.entry
        if ok:
            target.successes += 1
            target.failures = 0
            if entry.state != UP and target.successes >= health.rise:
                log.info("%s is up (%s)", target.label, detail)
                entry.set_state(UP, target.successes)
        else:
            target.failures += 1
            target.successes = 0
            if entry.state != DOWN and target.failures >= health.fall:
                log.warning("%s is down: %s (GET %s, Host: %s)", target.label, detail,
                            health.path, target.host)  # fmt: skip
                entry.set_state(DOWN, target.failures)
            elif entry.state == DOWN and entry.words[entry.index + UNTIL_MS]:
                entry.set_state(DOWN, target.failures)  # a passive mark, now confirmed
        self._check_fail_open(target, detail)

    def _check_fail_open(self, target: _Target, detail: str) -> None:
        """Log when the last checked server of an upstream goes down, and when one is back."""
        upstream = target.upstream
        group = [t for t in self.targets if t.upstream == upstream]
        all_down = all(t.entry.active_down for t in group)
        if all_down and upstream not in self.failing_open:
            self.failing_open.add(upstream)
            health = target.health
            log.error(
                "upstream %s: every server failed its health checks (last: %s); failing "
                "open: requests still go to them, so a probe that cannot pass does not take "
                "the site down. If the app is fine, check the probe: GET %s with Host: %s "
                "must answer %d-%d ([upstreams.%s.health] path, host, expect_status)",
                upstream,
                detail,
                health.path,
                target.host,
                *health.expect_status,
                upstream,
            )
        elif not all_down and upstream in self.failing_open:
            self.failing_open.discard(upstream)
            back = next(t for t in group if not t.entry.active_down)
            log.warning("upstream %s: %s passes its health checks again; no longer failing "
                        "open", upstream, back.server.url)  # fmt: skip
