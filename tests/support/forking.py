"""Forked children standing in for workers: run a function in each, check they exit 0.

A child never returns into pytest: it leaves with ``os._exit``, 0 when its function
returned, 1 when it raised (an ``assert`` in the child fails the parent's wait).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable


def fork(body: Callable[[], object]) -> int:
    """Fork a child that runs ``body()``; its pid (for :func:`wait_all`)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def wait_all(pids: Iterable[int]) -> None:
    """Wait for every child; each must have exited 0."""
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def run_forked(count: int, body: Callable[[int], int | None]) -> list[tuple[int, int | None]]:
    """Run ``body(n)`` in ``count`` forked children (n = 0 .. count - 1), all at once.

    Waits for them all (each must exit 0) and returns ``(pid, what body returned)`` for
    each, in order: an int comes back through a pipe.
    """
    children: list[tuple[int, int]] = []
    for n in range(count):
        read_fd, write_fd = os.pipe()

        def child(n: int = n, read_fd: int = read_fd, write_fd: int = write_fd) -> None:
            os.close(read_fd)
            result = body(n)
            if result is not None:
                os.write(write_fd, str(result).encode())

        pid = fork(child)
        os.close(write_fd)
        children.append((pid, read_fd))
    results: list[tuple[int, int | None]] = []
    try:
        wait_all(pid for pid, _ in children)
        for pid, read_fd in children:
            data = os.read(read_fd, 32)
            results.append((pid, int(data) if data else None))
    finally:
        for _, read_fd in children:
            os.close(read_fd)
    return results
