"""Bookkeeping for worker processes and the crash back-off per slot."""

from __future__ import annotations

import os
from dataclasses import dataclass

QUICK_DEATH = 5.0
"""A worker that dies sooner than this after its start counts towards the back-off."""

MAX_BACKOFF = 30.0


@dataclass
class WorkerProcess:
    slot: int
    generation: int
    pid: int
    started_at: float
    ready_fd: int
    """Read end of the pipe on which the worker reports that it listens."""
    ready: bool = False
    stopping: bool = False

    def close_pipe(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


@dataclass
class SlotBackoff:
    """Exponential delay between respawns of a slot whose worker keeps dying at start."""

    failures: int = 0
    not_before: float = 0.0

    def record_exit(self, lived: float, now: float) -> float:
        """Note a worker's unexpected exit; return the delay before the next spawn."""
        if lived >= QUICK_DEATH:
            self.failures = 0
            delay = 0.0
        else:
            delay = min(0.25 * (2**self.failures), MAX_BACKOFF)
            self.failures += 1
        self.not_before = now + delay
        return delay


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
