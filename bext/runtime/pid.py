"""This process's pid without a system call.

``os.getpid`` is a real system call on current glibc (it no longer caches the pid), and
some checks run per request: a store that must not be used across ``fork``, the
per-process cells of the shared in-flight counts. The value here is read once at import
and again in every forked child, before anything else runs in it.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()``, from memory."""
    return _pid
