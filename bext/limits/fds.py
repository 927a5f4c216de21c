"""The open files limit (RLIMIT_NOFILE), raised at start and checked against the config.

Every connection is a descriptor, and so is every upstream connection, static file being
sent and temp file. The common default soft limit of 1024 would cap a worker near a
thousand connections, whatever ``max_connections`` says, and show up only as failing
``accept()`` calls and files that cannot be opened. So the master raises its soft limit to
the hard limit before it forks anything (workers inherit it; only root could go past the
hard limit, as nginx's ``worker_rlimit_nofile`` does), and warns when the result is below
what the configuration needs.

The limit is per process, so the need is per worker: ``max_connections`` client
connections plus :data:`RESERVE` for listeners, logs, pipes and upstream connections (a
proxied request holds one more descriptor while it runs; nginx counts those within
``worker_connections`` and warns the same way when that exceeds the limit). The whole
master's need, ``workers`` x that, is checked against the system-wide ``fs.file-max``.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

from bext.config.schema import ServerConfig

log = logging.getLogger("bext")

RESERVE = 64
"""Descriptors a worker uses besides its client connections (listeners, logs, pipes...)."""

_FILE_MAX = Path("/proc/sys/fs/file-max")
_NR_OPEN = Path("/proc/sys/fs/nr_open")


def needed(server: ServerConfig) -> int:
    """Descriptors one worker may need for ``server.max_connections``."""
    return server.max_connections + RESERVE


def raise_open_files_limit(server: ServerConfig) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; warn if it is still too low.

    Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = _read_int(_NR_OPEN) or soft  # the kernel refuses more than nr_open
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    need = needed(server)
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "open files limit (RLIMIT_NOFILE) is %d, hard limit %d: each worker may need %d "
            "(server.max_connections = %d plus %d); beyond that, accept() and static files "
            "fail. Raise LimitNOFILE= in the systemd unit (or ulimit -Hn), or lower "
            "server.max_connections",
            soft,
            hard,
            need,
            server.max_connections,
            RESERVE,
        )
    file_max = _read_int(_FILE_MAX)
    total = need * server.workers
    if file_max and file_max < total:
        log.warning(
            "fs.file-max is %d, but %d workers x %d descriptors need %d; raise it "
            "(sysctl fs.file-max) or lower server.max_connections",
            file_max,
            server.workers,
            need,
            total,
        )
    return int(soft)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
