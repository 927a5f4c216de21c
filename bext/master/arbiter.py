"""The master loop: one blocking loop, signals queued and handled in one place.

Signal handlers only append to a queue and poke a self-pipe; :meth:`Arbiter.run` wakes on
that pipe, on a worker's ready pipe or on the control socket, handles the queued signals
in order with ``handle_<name>`` methods, reaps children, respawns dead workers (with
back-off), kills stuck ones, and watches deadlines. No threads and no event loop live in
the master, so nothing is inherited half-done across ``fork()`` (gunicorn's arbiter;
ARCHITECTURE.md, decision 2).

Reload (SIGHUP, ``bext reload``) follows "spawn new, then retire old": the new
configuration is loaded and validated first (a bad one leaves the old one serving and the
reason goes back to ``bext reload``), a new generation of workers starts on the same
listening sockets, and only once all of them listen does the old generation get SIGTERM
and drain. Listening sockets belong to the master and survive reloads, so no connection
waiting in an accept queue is ever dropped (decision 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bext import __version__
from bext.config import Config, ConfigError
from bext.master.control import ControlServer, reply
from bext.master.health import HealthChecker, release_entries
from bext.master.listeners import (
    HTTPS,
    INHERIT_ENV,
    BindError,
    Listener,
    ListenPlan,
    bind_plan,
    export_listeners,
    inherit_listeners,
)
from bext.master.notify import Notifier
from bext.master.tls_setup import TLSMaterial, TLSSetupError, prepare_tls
from bext.master.workers import (
    SlotBackoff,
    WorkerProcess,
    WorkerSpec,
    describe_exit,
)
from bext.observe.errorlog import log
from bext.shm.counters import heartbeat_age
from bext.shm.layout import MAX_SLOTS, Field, Segment

HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
)

FAST_STOP_GRACE = 5.0
"""How long workers get to exit on SIGINT/SIGQUIT before they are killed."""

UPGRADE_FROM_ENV = "BEXT_UPGRADE_FROM"
SHM_FD_ENV = "BEXT_SHM_FD"
GENERATION_ENV = "BEXT_GENERATION"
"""The new master continues the numbering, so its workers never share a counter block
with the old master's workers while both run."""

READY_TIMEOUT = 30.0
"""A new generation that is not listening after this long is abandoned (reload fails)."""

WorkerMain = Callable[[WorkerSpec], int]
ConfigLoader = Callable[[], Config]


class Arbiter:
    def __init__(
        self,
        config: Config,
        worker_main: WorkerMain,
        load_config: ConfigLoader,
        control_path: Path | None,
    ) -> None:
        self.config = config
        self.worker_main = worker_main
        self.load_config = load_config
        self.control_path = control_path
        self.control: ControlServer | None = None
        self.listeners: list[Listener] = []
        self.tls: TLSMaterial | None = None
        """The TLS context and certificates, built here before forking so that every
        worker shares one set of session-ticket keys (resumption across workers)."""
        self.retired_listeners: list[Listener] = []
        self.workers: dict[int, WorkerProcess] = {}
        self.worker_count = config.server.workers
        self.backoff = [SlotBackoff() for _ in range(MAX_SLOTS)]
        generation = os.environ.pop(GENERATION_ENV, "")
        self.generation = int(generation) if generation.isdigit() else 1
        self.signals: list[int] = []
        self.stop_deadline: float | None = None
        self.pending_reload: tuple[float, list[socket.socket]] | None = None
        """(deadline, clients waiting for the reply) while a new generation starts."""
        self.announced_ready = False
        self.started_at = time.time()
        self.notifier = Notifier()
        self.upgrade_from = int(os.environ.pop(UPGRADE_FROM_ENV, "0") or 0)
        """The old master's pid when this master was started by a binary upgrade."""
        self.upgrade_pid = 0
        """The new master's pid while this one runs a binary upgrade."""
        shm_fd = os.environ.pop(SHM_FD_ENV, "")
        self.segment = Segment(int(shm_fd) if shm_fd.isdigit() else None)
        self.health = HealthChecker(config, self.segment)
        self._wake_r = -1
        self._wake_w = -1

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; raises TLSSetupError or BindError if it cannot start."""
        self.tls = prepare_tls(self.config)
        inherited = os.environ.pop(INHERIT_ENV, "")
        if inherited:
            # A binary upgrade: the sockets (and their accept queues) carry over.
            self.listeners = inherit_listeners(inherited)
            for listener in self.listeners:
                listener.ensure_slots(self.worker_count)
                listener.trim_slots(self.worker_count)
        else:
            self.listeners = bind_plan(
                ListenPlan.from_config(self.config.server), self.worker_count
            )
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._enqueue_signal)
        if self.control_path is not None:
            self.control = ControlServer(self.control_path, take_over=bool(self.upgrade_from))
        self._write_pidfile()
        log.info(
            "master %d (bext %s) starting %d workers on %s",
            os.getpid(),
            __version__,
            self.worker_count,
            self._urls(),
        )
        try:
            for slot in range(self.worker_count):
                self.spawn(slot)
            while not self._stopped():
                self._wait()
                self._handle_signals()
                self._reap()
                self._check_heartbeats()
                self._respawn_due()
                self._check_reload_deadline()
                self._enforce_stop_deadline()
                self.notifier.watchdog()
        finally:
            for listener in self.listeners + self.retired_listeners:
                listener.close()
            for worker in self.workers.values():
                worker.close_pipe()
            self.health.close()
            if self.control is not None:
                self.control.close()
            self._remove_pidfile()
            os.close(self._wake_r)
            os.close(self._wake_w)
        log.info("master %d exiting", os.getpid())
        return 0

    def _stopped(self) -> bool:
        return self.stop_deadline is not None and not self.workers

    def _urls(self) -> str:
        return ", ".join(listener.url for listener in self.listeners)

    def _current_workers(self) -> list[WorkerProcess]:
        """The workers of the current generation (a reload's new one while it starts)."""
        return [w for w in self.workers.values() if w.generation == self.generation]

    def _status_line(self) -> str:
        current = self._current_workers()
        requests = self.segment.sum(Field.REQUESTS)
        return f"generation {self.generation}, {len(current)} workers, {requests} requests served"

    # -- signals ---------------------------------------------------------------------------

    def _enqueue_signal(self, signum: int, _frame: object) -> None:
        if len(self.signals) < 32:
            self.signals.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name.lower()
            getattr(self, f"handle_{name}")()

    def handle_sigchld(self) -> None:
        pass  # reaping happens on every loop turn

    def handle_sigterm(self) -> None:
        """Graceful stop: workers stop accepting and finish what is in flight."""
        if self.stop_deadline is None:
            log.info("SIGTERM: graceful stop (up to %.0fs)", self.config.server.graceful_timeout)
            self._notify_stopping()
            self.stop_deadline = time.monotonic() + self.config.server.graceful_timeout + 2.0
            self._signal_workers(signal.SIGTERM)

    def handle_sigint(self) -> None:
        self._fast_stop("SIGINT")

    def handle_sigquit(self) -> None:
        self._fast_stop("SIGQUIT")

    def _fast_stop(self, why: str) -> None:
        log.info("%s: fast stop", why)
        self._notify_stopping()
        deadline = time.monotonic() + FAST_STOP_GRACE
        if self.stop_deadline is None or self.stop_deadline > deadline:
            self.stop_deadline = deadline
        self._signal_workers(signal.SIGQUIT)

    def _notify_stopping(self) -> None:
        if self.upgrade_pid:
            # Retired by the new master of a binary upgrade, which systemd now knows as
            # MAINPID: STOPPING=1 (accepted from any process with NotifyAccess=all)
            # would make systemd stop the whole service, new master included.
            self.notifier.status(f"retiring: master {self.upgrade_pid} took over")
        else:
            self.notifier.stopping()

    def handle_sighup(self) -> None:
        error = self.reload()
        if error:
            log.error("reload refused, the running configuration stays:\n%s", error)

    def handle_sigusr1(self) -> None:
        log.info("SIGUSR1: workers reopen their log files")
        self._signal_workers(signal.SIGUSR1)

    def handle_sigusr2(self) -> None:
        error = self.upgrade()
        if error:
            log.error("binary upgrade refused: %s", error)

    # -- binary upgrade ----------------------------------------------------------------------

    def upgrade(self) -> str:
        """Start a new master from the installed code; it inherits the listening sockets.

        The new master starts its own workers on the same sockets and, once they listen,
        sends this master SIGTERM: this one then drains like on a stop. Returns the reason
        the upgrade could not start ("" when it did).
        """
        if self.stop_deadline is not None:
            return "bext is stopping"
        if self.upgrade_pid:
            return f"an upgrade is already under way (new master {self.upgrade_pid})"
        if self.pending_reload is not None:
            return "a reload is under way"
        env = dict(os.environ)
        env[INHERIT_ENV] = export_listeners(self.listeners)
        env[UPGRADE_FROM_ENV] = str(os.getpid())
        os.set_inheritable(self.segment.fd, True)
        env[SHM_FD_ENV] = str(self.segment.fd)
        env[GENERATION_ENV] = str(self.generation + 1)
        argv = [sys.executable, "-m", "bext", *sys.argv[1:]]
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        for listener in self.listeners:
            for sock in listener.sockets:
                os.set_inheritable(sock.fileno(), False)
        self.upgrade_pid = pid
        log.info("binary upgrade: new master %d starting (%s)", pid, " ".join(argv))
        return ""

    def handle_sigttin(self) -> None:
        self._resize(self.worker_count + 1)

    def handle_sigttou(self) -> None:
        self._resize(self.worker_count - 1)

    def _signal_workers(self, signum: int, only: list[WorkerProcess] | None = None) -> None:
        for worker in only if only is not None else self.workers.values():
            if signum in (signal.SIGTERM, signal.SIGQUIT):
                worker.stopping = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    # -- reload ------------------------------------------------------------------------------

    def reload(self, waiting: socket.socket | None = None) -> str:
        """Start a reload; return the reason it was refused ("" when it goes ahead)."""
        if self.stop_deadline is not None:
            return "bext is stopping"
        if self.pending_reload is not None:
            if waiting is not None:
                self.pending_reload[1].append(waiting)
            return ""  # already under way: the waiter gets that reload's outcome
        self.notifier.reloading()
        try:
            config = self.load_config()
        except ConfigError as exc:
            self.notifier.ready(self._status_line())
            return f"invalid configuration\n{exc}"
        except OSError as exc:
            self.notifier.ready(self._status_line())
            return f"cannot read the configuration: {exc}"
        try:
            tls = prepare_tls(config)  # certificates are re-read on every reload
        except TLSSetupError as exc:
            self.notifier.ready(self._status_line())
            return f"invalid TLS setup\n{exc}"
        new_server = config.server
        plan = ListenPlan.from_config(new_server)
        if plan != ListenPlan.from_config(self.config.server):
            try:
                listeners = bind_plan(plan, new_server.workers)
            except BindError as exc:
                self.notifier.ready(self._status_line())
                return str(exc)
            self.retired_listeners.extend(self.listeners)
            self.listeners = listeners
        else:
            error = self._fit_sockets(new_server.workers)
            if error:
                self.notifier.ready(self._status_line())
                return error
        release_entries(self.segment, self.config, config)
        self.config = config
        self.tls = tls
        self.health.close()
        self.health = HealthChecker(config, self.segment)  # claims entries before the fork
        self.worker_count = new_server.workers
        self.generation += 1
        log.info("reload: starting generation %d (%d workers)", self.generation,
                 self.worker_count)  # fmt: skip
        self.pending_reload = (time.monotonic() + READY_TIMEOUT, [])
        if waiting is not None:
            self.pending_reload[1].append(waiting)
        for slot in range(self.worker_count):
            self.spawn(slot)
        return ""

    def _fit_sockets(self, workers: int) -> str:
        """Give every listener one socket per worker slot (more workers: bind more)."""
        try:
            for listener in self.listeners:
                listener.ensure_slots(workers)
        except OSError as exc:
            return f"cannot add listening sockets: {exc}"
        return ""

    def _reload_ready(self) -> None:
        """Every worker of the new generation listens: retire the old ones."""
        assert self.pending_reload is not None
        _, waiters = self.pending_reload
        self.pending_reload = None
        old = [w for w in self.workers.values() if w.generation != self.generation]
        self._signal_workers(signal.SIGTERM, old)
        for listener in self.listeners:
            listener.trim_slots(self.worker_count)  # fewer workers: close the spare sockets
        log.info("reload: generation %d serving; %d old workers draining", self.generation,
                 len(old))  # fmt: skip
        self.notifier.ready(self._status_line())
        for conn in waiters:
            reply(conn, f"ok: generation {self.generation} serving")

    def _check_reload_deadline(self) -> None:
        if self.pending_reload is None or time.monotonic() < self.pending_reload[0]:
            return
        _, waiters = self.pending_reload
        self.pending_reload = None
        new = self._current_workers()
        log.error("reload: generation %d did not start in %.0fs; keeping the old workers",
                  self.generation, READY_TIMEOUT)  # fmt: skip
        self._signal_workers(signal.SIGKILL, new)
        self.generation -= 1  # the old generation stays current
        self.notifier.ready(self._status_line())
        for conn in waiters:
            reply(conn, "error: the new workers did not start; the old ones keep serving")

    def _resize(self, count: int) -> None:
        count = max(1, min(count, MAX_SLOTS))
        if count == self.worker_count or self.stop_deadline is not None:
            return
        error = self._fit_sockets(count)
        if error:
            log.error("%s", error)
            return
        log.info("worker count %d -> %d", self.worker_count, count)
        if count < self.worker_count:
            extra = [w for w in self.workers.values() if w.slot >= count]
            self._signal_workers(signal.SIGTERM, extra)
        self.worker_count = count
        for listener in self.listeners:
            listener.trim_slots(count)

    # -- workers ---------------------------------------------------------------------------

    def spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        generation = self.generation
        pid = os.fork()
        if pid == 0:  # worker
            code = 1
            try:
                os.close(ready_r)
                os.close(self._wake_r)
                os.close(self._wake_w)
                for sig in HANDLED_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                for other in self.workers.values():
                    other.close_pipe()
                if self.control is not None:
                    self.control.close_inherited()
                if self.pending_reload is not None:
                    for waiting in self.pending_reload[1]:
                        waiting.close()  # the master answers them; this copy must not linger
                mine = [(listener.kind, listener.sockets[slot]) for listener in self.listeners]
                kept = [sock for _, sock in mine]
                for listener in self.listeners + self.retired_listeners:
                    for sock in listener.sockets:
                        if sock not in kept:
                            sock.close()  # only this process's copy
                tls_port = next((x.port for x in self.listeners if x.kind == HTTPS), 0)
                spec = WorkerSpec(slot, generation, self.config, mine, ready_w, self.segment,
                                  self.tls, tls_port)  # fmt: skip
                code = self.worker_main(spec)
            except BaseException:
                log.exception("worker %d crashed", slot)
            finally:
                os._exit(code)
        os.close(ready_w)
        self.workers[pid] = WorkerProcess(slot, generation, pid, time.monotonic(), ready_r)
        log.info("worker %d started (pid %d, generation %d)", slot, pid, generation)

    def _wait(self) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        if self.control is not None:
            fds.append(self.control.fileno())
        if self.stop_deadline is not None:
            self.health.close()
        now = time.monotonic()
        timeout = self.health.next_timeout(now)
        for slot_backoff in self.backoff[: self.worker_count]:
            if slot_backoff.not_before > now:
                timeout = min(timeout, slot_backoff.not_before - now)
        probe_readers, probe_writers = self.health.select_sets()
        try:
            readable, writable, _ = select.select(
                [*fds, *probe_readers], probe_writers, [], max(timeout, 0.0)
            )
        except InterruptedError:
            return
        self.health.run(readable, writable)
        probes = set(probe_readers)
        for fd in readable:
            if fd in probes:
                continue  # a health probe: handled above
            if fd == self._wake_r:
                while True:
                    try:
                        if not os.read(fd, 512):
                            break
                    except BlockingIOError:
                        break
            elif self.control is not None and fd == self.control.fileno():
                self._serve_control()
            else:
                self._on_ready_pipe(fd)

    def _on_ready_pipe(self, fd: int) -> None:
        worker = next(w for w in self.workers.values() if w.ready_fd == fd)
        if os.read(fd, 64):
            worker.ready = True
        worker.close_pipe()  # one message ("listening") or EOF (died first)
        current = self._current_workers()
        if len(current) < self.worker_count or not all(w.ready for w in current):
            return
        if self.pending_reload is not None:
            self._reload_ready()
        elif not self.announced_ready:
            self.announced_ready = True
            log.info("ready: %d workers serving %s", len(current), self._urls())
            if self.upgrade_from:
                log.info("binary upgrade: retiring the old master %d", self.upgrade_from)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.upgrade_from, signal.SIGTERM)
                self.notifier.main_pid(os.getpid(), self._status_line())
            else:
                self.notifier.ready(self._status_line())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                if pid == self.upgrade_pid:
                    self.upgrade_pid = 0
                    if self.stop_deadline is None:
                        log.error("binary upgrade failed: the new master %s; this one keeps "
                                  "serving", describe_exit(status))  # fmt: skip
                continue
            worker.close_pipe()
            if worker.stopping or self.stop_deadline is not None:
                log.info("worker %d (pid %d, generation %d) stopped", worker.slot, pid,
                         worker.generation)  # fmt: skip
                self._close_retired_listeners()
                continue
            if worker.generation != self.generation or worker.slot >= self.worker_count:
                continue  # an old generation's worker: it is not replaced
            now = time.monotonic()
            delay = self.backoff[worker.slot].record_exit(now - worker.started_at, now)
            log.error(
                "worker %d (pid %d) %s; respawning%s",
                worker.slot,
                pid,
                describe_exit(status),
                f" in {delay:.2f}s" if delay else "",
            )

    def _close_retired_listeners(self) -> None:
        if self.retired_listeners and all(
            w.generation == self.generation for w in self.workers.values()
        ):
            for listener in self.retired_listeners:
                listener.close()
            self.retired_listeners.clear()

    def _check_heartbeats(self) -> None:
        for worker in list(self.workers.values()):
            if not worker.ready or worker.stopping:
                continue
            age = heartbeat_age(self.segment, worker.slot, worker.generation)
            if age > self.config.server.heartbeat_timeout:
                log.error("worker %d (pid %d) is stuck (no heartbeat for %.0fs); killing it",
                          worker.slot, worker.pid, age)  # fmt: skip
                self._signal_workers(signal.SIGKILL, [worker])
                worker.ready = False

    def _respawn_due(self) -> None:
        if self.stop_deadline is not None:
            return
        live = {w.slot for w in self._current_workers()}
        now = time.monotonic()
        for slot in range(self.worker_count):
            if slot not in live and self.backoff[slot].not_before <= now:
                self.spawn(slot)

    def _enforce_stop_deadline(self) -> None:
        if (
            self.stop_deadline is not None
            and self.workers
            and time.monotonic() >= self.stop_deadline
        ):
            log.warning("stop deadline passed: killing %d worker(s)", len(self.workers))
            self._signal_workers(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + 5.0

    # -- control socket --------------------------------------------------------------------

    def _serve_control(self) -> None:
        assert self.control is not None
        accepted = self.control.accept()
        if accepted is None:
            return
        conn, command = accepted
        if command == "reload":
            error = self.reload(waiting=conn)
            if error:
                log.error("reload refused, the running configuration stays:\n%s", error)
                reply(conn, f"error: {error}")
        elif command == "status":
            reply(conn, json.dumps(self.status()))
        elif command == "upgrade":
            error = self.upgrade()
            reply(conn, f"error: {error}" if error else f"ok: new master {self.upgrade_pid}")
        elif command == "stop":
            reply(conn, "ok: stopping")
            self.handle_sigterm()
        else:
            reply(conn, f"error: unknown command {command!r}")

    def status(self) -> dict[str, object]:
        """What ``bext status`` shows: processes, generation, counters."""
        import psutil

        def process(pid: int) -> dict[str, object]:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    return {"pid": pid, "rss": proc.memory_info().rss,
                            "cpu_seconds": round(sum(proc.cpu_times()[:2]), 2)}  # fmt: skip
            except psutil.Error:
                return {"pid": pid}

        counters = {field.name.lower(): self.segment.sum(field) for field in Field
                    if field not in (Field.PID, Field.GENERATION, Field.HEARTBEAT_MS)}  # fmt: skip
        return {
            "version": __version__,
            "master": process(os.getpid()),
            "generation": self.generation,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "listeners": [listener.url for listener in self.listeners],
            "workers": [
                {
                    **process(w.pid),
                    "slot": w.slot,
                    "generation": w.generation,
                    "state": "draining" if w.stopping else "ready" if w.ready else "starting",
                }
                for w in sorted(self.workers.values(), key=lambda w: (w.generation, w.slot))
            ],
            "counters": counters,
            "upstreams": self.health.report(),
        }

    # -- pidfile ---------------------------------------------------------------------------

    def _write_pidfile(self) -> None:
        path = self.config.server.pidfile
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{os.getpid()}\n")
            tmp.replace(path)

    def _remove_pidfile(self) -> None:
        path = self.config.server.pidfile
        if path is not None:
            try:
                if path.read_text().strip() == str(os.getpid()):
                    path.unlink()
            except OSError:
                pass
