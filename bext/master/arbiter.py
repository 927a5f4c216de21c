"""The master loop: one blocking loop, signals queued and handled in one place.

Signal handlers only append to a queue and poke a self-pipe; :meth:`Arbiter.run` wakes on
that pipe, on a worker's ready pipe or on the control socket, handles the queued signals
in order with ``handle_<name>`` methods, reaps children, respawns dead workers (with
back-off), kills stuck ones, and watches deadlines. No threads and no event loop live in
the master, so nothing is inherited half-done across ``fork()`` (gunicorn's arbiter;
ARCHITECTURE.md, decision 2).

What the master serves is a :class:`~bext.master.generations.Generation`: a configuration
with its TLS contexts, listeners, compiled pipeline, access log and health checks, built
whole before any worker forks. Reload (SIGHUP, ``bext reload``) follows "spawn new, then
retire old": a new generation is built first (a bad configuration, or one that cannot be
built, leaves the running one serving and the reason goes back to ``bext reload`` at
once), its workers start on the same listening sockets, and only once all of them listen
does it become current and the old generation get SIGTERM and drain. If they do not
listen in time the new generation is dropped whole: the running one is exactly what it
was, and a worker of it that dies later respawns with its own configuration. Listening
sockets belong to the master and survive reloads, so no connection waiting in an accept
queue is ever dropped (decision 1).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bext import __version__
from bext.config import Config, ConfigError
from bext.limits.fds import raise_open_files_limit
from bext.master.control import ControlServer, reply
from bext.master.generations import (
    INVALID,
    Generation,
    GenerationError,
    build_generation,
    health_keys,
    release,
)
from bext.master.listeners import INHERIT_ENV, Listener, export_listeners, inherit_listeners
from bext.master.notify import Notifier
from bext.master.statsd import StatsdSender
from bext.master.workers import SlotBackoff, WorkerProcess, describe_exit
from bext.observe.errorlog import log
from bext.observe.status_page import QUANTILES, histogram_quantile
from bext.runtime.spec import WorkerSpec
from bext.shm.counters import heartbeat_age
from bext.shm.layout import MAX_SLOTS, Field, Header, Segment
from bext.shm.metrics import DURATION, OPEN, VERSIONS, MetricsReader, histogram
from bext.shm.peers import release_owner

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

READY_TIMEOUT_ENV = "BEXT_READY_TIMEOUT"
"""Seconds, overriding :data:`READY_TIMEOUT`. Meant for tests, which cannot wait 30 s for
a reload to time out; there is no config key for it on purpose."""

WorkerMain = Callable[[WorkerSpec], int]
ConfigLoader = Callable[[], Config]


def ready_timeout() -> float:
    """:data:`READY_TIMEOUT`, or the positive number of seconds in ``BEXT_READY_TIMEOUT``."""
    try:
        value = float(os.environ.get(READY_TIMEOUT_ENV, ""))
    except ValueError:
        return READY_TIMEOUT
    return value if 0 < value < 86400 else READY_TIMEOUT


class Arbiter:
    current: Generation
    """The generation serving; set by :meth:`run`."""

    def __init__(
        self,
        config: Config,
        worker_main: WorkerMain,
        load_config: ConfigLoader,
        control_path: Path | None,
    ) -> None:
        self.initial_config = config
        self.worker_main = worker_main
        self.load_config = load_config
        self.control_path = control_path
        self.control: ControlServer | None = None
        self.pending: Generation | None = None
        """The generation a reload is starting, until its workers all listen."""
        self.draining: list[Generation] = []
        """Former generations whose workers have not all exited yet."""
        self.workers: dict[int, WorkerProcess] = {}
        self.backoff = [SlotBackoff() for _ in range(MAX_SLOTS)]
        generation = os.environ.pop(GENERATION_ENV, "")
        self.first_generation = int(generation) if generation.isdigit() else 1
        self.ready_timeout = ready_timeout()
        self.resize_after_reload = 0
        """TTIN/TTOU received while a reload was starting: applied once it is settled."""
        self.signals: list[int] = []
        self.stop_deadline: float | None = None
        self.announced_ready = False
        self.started_at = time.time()
        self.notifier = Notifier()
        self.upgrade_from = int(os.environ.pop(UPGRADE_FROM_ENV, "0") or 0)
        """The old master's pid when this master was started by a binary upgrade."""
        self.upgrade_pid = 0
        """The new master's pid while this one runs a binary upgrade."""
        shm_fd = os.environ.pop(SHM_FD_ENV, "")
        self.segment = Segment(int(shm_fd) if shm_fd.isdigit() else None)
        self.statsd = StatsdSender(self.segment)
        """``[metrics] statsd``: deltas of the segment's counters, sent from the loop."""
        self._wake_r = -1
        self._wake_w = -1

    @property
    def config(self) -> Config:
        """The configuration being served (the current generation's)."""
        return self.current.config

    @property
    def generation(self) -> int:
        return self.current.number

    @property
    def worker_count(self) -> int:
        return self.current.worker_count

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; raises GenerationError if the first generation cannot be
        built (invalid TLS setup, an address that cannot be bound, a pipeline or access
        log that cannot be built)."""
        inherited = os.environ.pop(INHERIT_ENV, "")
        adopt: list[Listener] | None = None
        if inherited:
            # A binary upgrade: the sockets (and their accept queues) carry over.
            try:
                adopt = inherit_listeners(inherited)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise GenerationError(f"cannot adopt the old master's sockets: {exc}",
                                      config_fault=False) from exc  # fmt: skip
        raise_open_files_limit(self.initial_config.server)  # before any fork: workers inherit
        self.current = build_generation(
            self.first_generation, self.initial_config, self.segment, adopt=adopt
        )
        try:
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
                self.current.urls(),
            )
            for slot in range(self.worker_count):
                self.spawn(self.current, slot)
            while not self._stopped():
                self._wait()
                self._handle_signals()
                self._reap()
                self._check_heartbeats()
                self.statsd.tick(self.config.metrics, paused=bool(self.upgrade_pid))
                self._respawn_due()
                self._check_reload_deadline()
                self._enforce_stop_deadline()
                self.notifier.watchdog()
        finally:
            # The last deltas, once the workers are gone; not after a binary upgrade
            # (the new master sends from the point this one handed over).
            self.statsd.close(self.config.metrics, flush=not self.upgrade_pid)
            for generation in self._generations():
                generation.close()
                for listener in generation.listeners:
                    listener.close()  # closing twice (shared listeners) is harmless
            for worker in self.workers.values():
                worker.close_pipe()
            if self.control is not None:
                self.control.close()
            self._remove_pidfile()
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
        log.info("master %d exiting", os.getpid())
        return 0

    def _stopped(self) -> bool:
        return self.stop_deadline is not None and not self.workers

    def _generations(self) -> Iterator[Generation]:
        """Every generation the master holds: current, starting, draining."""
        yield self.current
        if self.pending is not None:
            yield self.pending
        yield from self.draining

    def _generation(self, number: int) -> Generation | None:
        return next((g for g in self._generations() if g.number == number), None)

    def _workers_of(self, generation: Generation) -> list[WorkerProcess]:
        """The live workers of ``generation`` (not those told to stop or killed)."""
        return [w for w in self.workers.values()
                if w.generation == generation.number and not w.stopping]  # fmt: skip

    def _all_ready(self, generation: Generation) -> bool:
        ready = {w.slot for w in self._workers_of(generation) if w.ready}
        return all(slot in ready for slot in range(generation.worker_count))

    def _status_line(self) -> str:
        current = self._workers_of(self.current)
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
            grace = max(g.config.server.graceful_timeout for g in self._generations())
            log.info("SIGTERM: graceful stop (up to %.0fs)", grace)
            self._notify_stopping()
            self.stop_deadline = time.monotonic() + grace + 2.0
            self._abandon_reload("bext is stopping")
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
        self._abandon_reload("bext is stopping")
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
        # The master's copies too: a worker forked later must inherit the new file.
        for generation in (self.current, self.pending):
            if generation is None:
                continue
            try:
                generation.access_log.reopen()
            except (OSError, ValueError) as exc:
                log.error("cannot reopen the access log %s: %s",
                          generation.config.log.access, exc)  # fmt: skip
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
        if self.pending is not None:
            return "a reload is under way"
        env = dict(os.environ)
        env[INHERIT_ENV] = export_listeners(self.current.listeners)
        env[UPGRADE_FROM_ENV] = str(os.getpid())
        os.set_inheritable(self.segment.fd, True)
        env[SHM_FD_ENV] = str(self.segment.fd)
        env[GENERATION_ENV] = str(self.generation + 1)
        env.update(self.statsd.hand_over(self.config.metrics))
        argv = [sys.executable, "-m", "bext", *sys.argv[1:]]
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        for listener in self.current.listeners:
            for sock in listener.sockets:
                os.set_inheritable(sock.fileno(), False)
        self.upgrade_pid = pid
        log.info("binary upgrade: new master %d starting (%s)", pid, " ".join(argv))
        return ""

    def handle_sigttin(self) -> None:
        self._request_resize(+1)

    def handle_sigttou(self) -> None:
        self._request_resize(-1)

    def _signal_workers(self, signum: int, only: list[WorkerProcess] | None = None) -> None:
        for worker in only if only is not None else self.workers.values():
            if signum in (signal.SIGTERM, signal.SIGQUIT):
                worker.stopping = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    # -- reload ------------------------------------------------------------------------------

    def reload(self, waiting: socket.socket | None = None) -> str:
        """Start a reload; return the reason it was refused ("" when it goes ahead).

        The new generation is built whole first; if anything in that fails (the reason
        names the config key), nothing of the running generation has changed.
        """
        if self.stop_deadline is not None:
            return "bext is stopping"
        if self.pending is not None:
            if waiting is not None:
                self.pending.waiters.append(waiting)
            return ""  # already under way: the waiter gets that reload's outcome
        self.notifier.reloading()
        try:
            generation = self._build_next()
        except GenerationError as exc:
            self.notifier.ready(self._status_line())
            return str(exc)
        generation.deadline = time.monotonic() + self.ready_timeout
        if waiting is not None:
            generation.waiters.append(waiting)
        self.pending = generation
        log.info("reload: starting generation %d (%d workers)", generation.number,
                 generation.worker_count)  # fmt: skip
        for slot in range(generation.worker_count):
            self.spawn(generation, slot)
        return ""

    def _build_next(self) -> Generation:
        """Load the configuration and build the next generation; raises GenerationError."""
        try:
            config = self.load_config()
        except ConfigError as exc:
            raise GenerationError(f"{INVALID}\n{exc}") from exc
        except OSError as exc:
            raise GenerationError(f"cannot read the configuration: {exc}") from exc
        except Exception as exc:  # the master must never die on a file it is given
            raise GenerationError(f"cannot load the configuration: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
        keep = health_keys(self._generations())  # draining workers still use theirs
        try:
            # The number after the current one, even after an abandoned reload: its
            # counter block (by parity) must differ from the running workers'.
            return build_generation(self.generation + 1, config, self.segment,
                                    base=self.current, keep_health=keep)  # fmt: skip
        except GenerationError:
            raise
        except Exception as exc:  # build_generation converts everything; belt and braces
            raise GenerationError(f"cannot build the configuration: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip

    def _promote(self) -> None:
        """Every worker of the starting generation listens: it becomes current, and the
        workers of every other generation drain."""
        new = self.pending
        assert new is not None
        self.pending = None
        old = self.current
        self.current = new
        self.segment.words[Header.RELOADS] += 1
        old.health.close()  # the new generation's checker probes from now on
        retiring = [w for w in self.workers.values() if w.generation != new.number]
        self._signal_workers(signal.SIGTERM, retiring)
        for listener in new.listeners:
            listener.trim_slots(new.worker_count)  # fewer workers: close the spare sockets
        self.draining.append(old)
        self._drop_drained()
        log.info("reload: generation %d serving; %d old workers draining", new.number,
                 len(retiring))  # fmt: skip
        self.notifier.ready(self._status_line())
        for conn in new.waiters:
            reply(conn, f"ok: generation {new.number} serving")
        new.waiters.clear()
        self._apply_deferred_resize()

    def _check_reload_deadline(self) -> None:
        pending = self.pending
        if pending is None or time.monotonic() < pending.deadline:
            return
        log.error("reload: generation %d did not start in %gs; keeping generation %d",
                  pending.number, self.ready_timeout, self.generation)  # fmt: skip
        self._abandon_reload("the new workers did not start; the old ones keep serving")
        self.notifier.ready(self._status_line())

    def _abandon_reload(self, why: str) -> None:
        """Drop the starting generation whole; the current one stays exactly as it was.

        Its workers that already listen may have taken connections: they drain
        (SIGTERM); the others are killed. What only it held (listeners it bound, extra
        sockets on shared ones, its access log, health entries) is released.
        """
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        doomed = [w for w in self.workers.values() if w.generation == pending.number]
        self._signal_workers(signal.SIGTERM, [w for w in doomed if w.ready])
        unready = [w for w in doomed if not w.ready]
        for worker in unready:
            worker.stopping = True  # not replaced, not counted as live
        self._signal_workers(signal.SIGKILL, unready)
        release(pending, self._generations(), self.segment)
        for listener in self.current.listeners:
            listener.trim_slots(self.current.worker_count)
        for conn in pending.waiters:
            reply(conn, f"error: {why}")
        pending.waiters.clear()
        self._apply_deferred_resize()

    def _drop_drained(self) -> None:
        """Release the former generations whose last worker has exited."""
        for generation in list(self.draining):
            if not any(w.generation == generation.number for w in self.workers.values()):
                self.draining.remove(generation)
                release(generation, self._generations(), self.segment)

    # -- worker count ----------------------------------------------------------------------

    def _request_resize(self, delta: int) -> None:
        if self.pending is not None:
            self.resize_after_reload += delta
            log.info("worker count change waits for the reload under way")
            return
        self._resize(self.worker_count + delta)

    def _apply_deferred_resize(self) -> None:
        delta, self.resize_after_reload = self.resize_after_reload, 0
        if delta:
            self._resize(self.worker_count + delta)

    def _fit_sockets(self, workers: int) -> str:
        """Give every listener one socket per worker slot (more workers: bind more)."""
        try:
            for listener in self.current.listeners:
                listener.ensure_slots(workers)
        except OSError as exc:
            return f"cannot add listening sockets: {exc}"
        return ""

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
            extra = [w for w in self._workers_of(self.current) if w.slot >= count]
            self._signal_workers(signal.SIGTERM, extra)
        self.current.worker_count = count
        for listener in self.current.listeners:
            listener.trim_slots(count)

    # -- workers ---------------------------------------------------------------------------

    def spawn(self, generation: Generation, slot: int) -> None:
        """Fork worker ``slot`` of ``generation``, with that generation's configuration."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        # Everything the master holds now goes to the collector's permanent generation in
        # the child: a worker's collections then never walk (and so never copy) the pages
        # it shares with the master. The master takes them back at once (unfreeze), so
        # what a reload leaves behind can still be collected there.
        gc.freeze()
        pid = os.fork()
        if pid != 0:
            gc.unfreeze()
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
                self.statsd.close_inherited()
                mine = generation.slot_sockets(slot)
                kept = {id(sock) for _, sock in mine}
                for held in list(self._generations()):
                    for waiting in held.waiters:
                        waiting.close()  # the master answers them; this copy must not linger
                    held.health.close()  # this process's copies of the probe sockets
                    if held is not generation:
                        held.access_log.close()  # never stdout/stderr
                    for listener in held.listeners:
                        for sock in listener.sockets:
                            if id(sock) not in kept:
                                sock.close()  # only this process's copy
                spec = WorkerSpec(slot, generation.number, generation.config, mine, ready_w,
                                  self.segment, generation.pipeline, generation.access_log,
                                  generation.tls, generation.tls_port)  # fmt: skip
                code = self.worker_main(spec)
            except BaseException:
                log.exception("worker %d crashed", slot)
            finally:
                os._exit(code)
        os.close(ready_w)
        self.workers[pid] = WorkerProcess(slot, generation.number, pid, time.monotonic(),
                                          ready_r)  # fmt: skip
        log.info("worker %d started (pid %d, generation %d)", slot, pid, generation.number)

    def _wait(self) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        if self.control is not None:
            fds.append(self.control.fileno())
        health = self.current.health
        if self.stop_deadline is not None:
            health.close()
        now = time.monotonic()
        timeout = health.next_timeout(now)
        for slot_backoff in self.backoff[: self._slots_in_use()]:
            if slot_backoff.not_before > now:
                timeout = min(timeout, slot_backoff.not_before - now)
        if self.pending is not None:
            timeout = min(timeout, self.pending.deadline - now)
        timeout = min(timeout, self.statsd.timeout(now))
        probe_readers, probe_writers = health.select_sets()
        try:
            readable, writable, _ = select.select(
                [*fds, *probe_readers], probe_writers, [], max(timeout, 0.0)
            )
        except InterruptedError:
            return
        health.run(readable, writable)
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

    def _slots_in_use(self) -> int:
        pending = self.pending.worker_count if self.pending is not None else 0
        return max(self.worker_count, pending)

    def _on_ready_pipe(self, fd: int) -> None:
        worker = next(w for w in self.workers.values() if w.ready_fd == fd)
        if os.read(fd, 64):
            worker.ready = True
        worker.close_pipe()  # one message ("listening") or EOF (died first)
        if self.pending is not None:
            if self._all_ready(self.pending):
                self._promote()
            else:
                return
        if not self.announced_ready and self._all_ready(self.current):
            self.announced_ready = True
            log.info("ready: %d workers serving %s", len(self._workers_of(self.current)),
                     self.current.urls())  # fmt: skip
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
            if worker is not None:
                # Its per-address connection counts die with it (it cannot release them).
                release_owner(self.segment, pid)
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
                self._drop_drained()
                continue
            generation = self._serving(worker.generation)
            if generation is None or worker.slot >= generation.worker_count:
                self._drop_drained()
                continue  # an old generation's worker: it is not replaced
            now = time.monotonic()
            delay = self.backoff[worker.slot].record_exit(now - worker.started_at, now)
            self.segment.words[Header.WORKER_RESTARTS] += 1
            log.error(
                "worker %d (pid %d) %s; respawning%s",
                worker.slot,
                pid,
                describe_exit(status),
                f" in {delay:.2f}s" if delay else "",
            )

    def _serving(self, number: int) -> Generation | None:
        """The current or the starting generation with that number: slots that respawn."""
        for generation in (self.current, self.pending):
            if generation is not None and generation.number == number:
                return generation
        return None

    def _check_heartbeats(self) -> None:
        for worker in list(self.workers.values()):
            if not worker.ready or worker.stopping:
                continue
            generation = self._generation(worker.generation) or self.current
            age = heartbeat_age(self.segment, worker.slot, worker.generation)
            if age > generation.config.server.heartbeat_timeout:
                log.error("worker %d (pid %d) is stuck (no heartbeat for %.0fs); killing it",
                          worker.slot, worker.pid, age)  # fmt: skip
                self._signal_workers(signal.SIGKILL, [worker])
                worker.ready = False

    def _respawn_due(self) -> None:
        """Replace the missing workers of the current and the starting generation, each
        with its own generation's configuration."""
        if self.stop_deadline is not None:
            return
        now = time.monotonic()
        for generation in (self.current, self.pending):
            if generation is None:
                continue
            live = {w.slot for w in self._workers_of(generation)}
            for slot in range(generation.worker_count):
                if slot not in live and self.backoff[slot].not_before <= now:
                    self.spawn(generation, slot)

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
        elif command.partition(" ")[0] == "cache-purge":
            reply(conn, self.cache_purge(command.partition(" ")[2]))
        else:
            shown = repr(command[:60]) + ("..." if len(command) > 60 else "")
            reply(conn, f"error: unknown command {shown}")

    def cache_purge(self, argument: str) -> str:
        """``bext cache purge``: ``argument`` is the admin endpoint's JSON body, parsed
        again here (whoever can reach the socket). The reply line: ``ok: <counts JSON>`` or
        ``error: <reason>``; nothing raises.

        Tags and "all" are generation words in the shared segment; URLs, prefixes and a
        hard "all" need the LMDB store, which is opened here for this purge only and
        closed before returning, so no environment is left open in the master for a
        later fork to inherit (workers open their own).
        """
        try:
            from bext.cache.purge import PurgeError, parse_body

            try:
                request = parse_body(argument.encode("utf-8", "surrogateescape"))
            except PurgeError as exc:
                return f"error: invalid purge request: {exc.reason}"
            cache = self.current.pipeline.cache
            if cache is None:
                return "error: the cache is not enabled in this configuration"
            soft = request.soft
            needs_store = bool(request.urls or request.prefixes or (request.all and not soft))
            try:
                if needs_store:
                    cache.store.open()
                result = cache.purge(request)
            finally:
                if needs_store:
                    cache.store.close()
        except Exception as exc:  # a disk error, a bug: reported, the master goes on
            log.exception("cache purge failed")
            return f"error: cache purge failed: {type(exc).__name__}: {exc}"
        log.info("cache purge%s: %s", " (soft)" if request.soft else "",
                 json.dumps(result.as_json()))  # fmt: skip
        return f"ok: {json.dumps(result.as_json())}"

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
        totals = MetricsReader(self.segment).totals()
        cumulative, _ = histogram(totals, DURATION)
        latency = {f"p{round(q * 100)}": histogram_quantile(q, cumulative) for q in QUANTILES}
        return {
            "version": __version__,
            "master": process(os.getpid()),
            "generation": self.generation,
            "starting_generation": self.pending.number if self.pending is not None else None,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "listeners": [listener.url for listener in self.current.listeners],
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
            "latency_seconds": latency,
            "connections_open": {v: totals[OPEN + i] for i, v in enumerate(VERSIONS)},
            "reloads": self.segment.words[Header.RELOADS],
            "worker_restarts": self.segment.words[Header.WORKER_RESTARTS],
            "upstreams": self.current.health.report(),
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
