"""The master loop: one blocking loop, signals queued and handled in one place.

Signal handlers only append to a queue and poke a self-pipe; :meth:`Arbiter.run` wakes on
that pipe or on a worker's ready pipe, handles the queued signals in order with
``handle_<name>`` methods, reaps children, respawns dead workers (with back-off) and
watches the stop deadline. No threads and no event loop live in the master, so nothing is
inherited half-done across ``fork()`` (gunicorn's arbiter; ARCHITECTURE.md, decision 2).

The supervisor features (reload, binary upgrade, shared memory, systemd notify) plug in as
more ``handle_*`` methods and loop duties.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable

from bext.config import Config
from bext.master.listeners import Listener, bind_listeners
from bext.master.workers import SlotBackoff, WorkerProcess, describe_exit
from bext.observe.errorlog import log

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

WorkerMain = Callable[[int, int, list[Listener], Config, int], int]


class Arbiter:
    def __init__(self, config: Config, worker_main: WorkerMain) -> None:
        self.config = config
        self.worker_main = worker_main
        self.listeners: list[Listener] = []
        self.workers: dict[int, WorkerProcess] = {}
        self.backoff = [SlotBackoff() for _ in range(config.server.workers)]
        self.generation = 1
        self.signals: list[int] = []
        self.stop_deadline: float | None = None
        self.announced_ready = False
        self.exit_code = 0
        self._wake_r = -1
        self._wake_w = -1

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        server = self.config.server
        self.listeners = bind_listeners(
            server.host, server.port, server.workers, server.host_is_default
        )
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._enqueue_signal)
        log.info(
            "master %d starting %d workers on %s",
            os.getpid(),
            server.workers,
            ", ".join(listener.url for listener in self.listeners),
        )
        try:
            for slot in range(server.workers):
                self.spawn(slot)
            while not self._stopped():
                self._wait()
                self._handle_signals()
                self._reap()
                self._respawn_due()
                self._enforce_stop_deadline()
        finally:
            for listener in self.listeners:
                listener.close()
            for worker in self.workers.values():
                worker.close_pipe()
            os.close(self._wake_r)
            os.close(self._wake_w)
        log.info("master %d exiting", os.getpid())
        return self.exit_code

    def _stopped(self) -> bool:
        return self.stop_deadline is not None and not self.workers

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
            self.stop_deadline = time.monotonic() + self.config.server.graceful_timeout + 2.0
            self._signal_workers(signal.SIGTERM)

    def handle_sigint(self) -> None:
        self._fast_stop("SIGINT")

    def handle_sigquit(self) -> None:
        self._fast_stop("SIGQUIT")

    def _fast_stop(self, why: str) -> None:
        log.info("%s: fast stop", why)
        deadline = time.monotonic() + FAST_STOP_GRACE
        if self.stop_deadline is None or self.stop_deadline > deadline:
            self.stop_deadline = deadline
        self._signal_workers(signal.SIGQUIT)

    def handle_sighup(self) -> None:
        log.warning(
            "SIGHUP: configuration reload is not available in this version; restart "
            "bext to apply a new configuration"
        )

    def handle_sigusr1(self) -> None:
        self._signal_workers(signal.SIGUSR1)  # workers reopen their log files

    def handle_sigusr2(self) -> None:
        log.warning("SIGUSR2: binary upgrade is not available in this version")

    def handle_sigttin(self) -> None:
        log.warning("SIGTTIN: changing the worker count at runtime is not available yet")

    def handle_sigttou(self) -> None:
        log.warning("SIGTTOU: changing the worker count at runtime is not available yet")

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers.values():
            if signum in (signal.SIGTERM, signal.SIGQUIT):
                worker.stopping = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    # -- workers ---------------------------------------------------------------------------

    def spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
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
                code = self.worker_main(slot, self.generation, self.listeners, self.config, ready_w)
            except BaseException:
                log.exception("worker %d crashed", slot)
            finally:
                os._exit(code)
        os.close(ready_w)
        self.workers[pid] = WorkerProcess(slot, self.generation, pid, time.monotonic(), ready_r)
        log.info("worker %d started (pid %d)", slot, pid)

    def _wait(self) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        timeout = 1.0
        now = time.monotonic()
        for slot_backoff in self.backoff:
            if slot_backoff.not_before > now:
                timeout = min(timeout, slot_backoff.not_before - now)
        try:
            readable, _, _ = select.select(fds, [], [], max(timeout, 0.0))
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wake_r:
                while True:
                    try:
                        if not os.read(fd, 512):
                            break
                    except BlockingIOError:
                        break
            else:
                self._on_ready_pipe(fd)

    def _on_ready_pipe(self, fd: int) -> None:
        worker = next(w for w in self.workers.values() if w.ready_fd == fd)
        data = os.read(fd, 64)
        if data:
            worker.ready = True
        worker.close_pipe()  # one message ("listening") or EOF (died first)
        if (
            not self.announced_ready
            and len(self.workers) == self.config.server.workers
            and all(w.ready for w in self.workers.values())
        ):
            self.announced_ready = True
            log.info(
                "ready: %d workers serving %s",
                len(self.workers),
                ", ".join(listener.url for listener in self.listeners),
            )

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
                continue
            worker.close_pipe()
            if worker.stopping or self.stop_deadline is not None:
                log.info("worker %d (pid %d) stopped", worker.slot, pid)
                continue
            now = time.monotonic()
            delay = self.backoff[worker.slot].record_exit(now - worker.started_at, now)
            log.error(
                "worker %d (pid %d) %s; respawning%s",
                worker.slot,
                pid,
                describe_exit(status),
                f" in {delay:.2f}s" if delay else "",
            )

    def _respawn_due(self) -> None:
        if self.stop_deadline is not None:
            return
        live = {w.slot for w in self.workers.values()}
        now = time.monotonic()
        for slot in range(self.config.server.workers):
            if slot not in live and self.backoff[slot].not_before <= now:
                self.spawn(slot)

    def _enforce_stop_deadline(self) -> None:
        if (
            self.stop_deadline is not None
            and self.workers
            and time.monotonic() >= self.stop_deadline
        ):
            log.warning("stop deadline passed: killing %d worker(s)", len(self.workers))
            for worker in self.workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            self.stop_deadline = time.monotonic() + 5.0
