"""Where a worker's proxy temp files go, and how much they may hold together.

Request bodies over 1 MiB are spooled to disk before the upstream request starts, and
responses are read ahead of slow clients into a temp file (:mod:`bext.proxy.spill`).
Both are anonymous files in ``server.temp_path`` (``O_TMPFILE`` where the filesystem has
it, else created and unlinked at once), and both count against one
:class:`TempSpace` per worker: ``server.temp_budget`` bytes on disk in all. What happens
when there is no room is the caller's choice, and differs on purpose:

* an upload that needs disk beyond the budget, or hits a full disk, is answered ``503``
  with ``Retry-After`` (:class:`TempSpaceFull`): the client can try again later, and
  nothing was sent upstream yet;
* response read-ahead falls back to memory and back-pressure: the upstream is read only
  as fast as the client takes the data, and the response is never cut short.

Running out is logged as one line, at most once per :data:`REPORT_INTERVAL` per cause,
consequence (uploads refused, downloads slowed) and worker, without a traceback: a full
disk is an operating condition, not a bug.

The pipeline builds one :class:`TempSpace` per configuration in the master, after
checking that ``temp_path`` is a directory bext can create files in; each forked worker
gets its own copy, hence its own count.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time

from bext.config.errors import quote
from bext.config.units import format_size

log = logging.getLogger("bext")

DEFAULT_BUDGET = 1024**3
"""``server.temp_budget``'s default (1 GiB per worker)."""
REPORT_INTERVAL = 10.0
"""Seconds between two log lines about the same shortage in one worker."""
RETRY_AFTER = b"5"
"""``Retry-After`` (seconds) of an upload refused for lack of temp space."""

_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
"""What ``open(O_TMPFILE)`` fails with where the filesystem (or kernel) lacks it."""


class TempSpaceFull(Exception):
    """No room for a request body on disk: the budget is used up, or the disk is full."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TempSpace:
    """A temp directory and a byte budget shared by every spool and spill of a worker.

    Files :meth:`take` bytes before they write them and :meth:`give` them back when they
    shrink or close, so :attr:`used` is what this worker's temp files hold on disk (plus
    what uploads with a declared length have reserved).
    """

    __slots__ = ("_reported", "_tmpfile", "budget", "path", "used")

    def __init__(
        self, path: str | os.PathLike[str] | None = None, budget: int = DEFAULT_BUDGET
    ) -> None:
        self.path = os.fspath(path) if path is not None else tempfile.gettempdir()
        self.budget = budget
        self.used = 0
        self._tmpfile = hasattr(os, "O_TMPFILE")
        self._reported: dict[str, float] = {}

    def check(self) -> None:
        """Raise ValueError unless :attr:`path` is a directory bext may create files in.

        Run when the pipeline is built (``bext check``, start, reload), so it writes
        nothing: a permission or read-only filesystem shows in ``access(2)`` already.
        """
        if not os.path.isdir(self.path):
            raise ValueError(f"{quote(self.path)} is not an existing directory")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ValueError(f"{quote(self.path)} is not writable by this user")

    # -- the budget ---------------------------------------------------------------------------

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes on disk; False (and nothing counted) past the budget."""
        if self.used + size > self.budget:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - size)

    # -- files --------------------------------------------------------------------------------

    def open(self) -> int:
        """A new anonymous read/write file in :attr:`path` (raises OSError)."""
        if self._tmpfile:
            try:
                return os.open(self.path, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                self._tmpfile = False  # not on this filesystem: create and unlink instead
        fd, name = tempfile.mkstemp(prefix="bext-", dir=self.path)
        try:
            os.unlink(name)
        except OSError:
            os.close(fd)
            raise
        return fd

    # -- reports ------------------------------------------------------------------------------

    def over_budget(self, consequence: str) -> None:
        """Log (rate-limited) that the budget is used up, and what that means here."""
        if self._due(f"budget: {consequence}"):
            log.warning(
                "server.temp_budget (%s per worker) is used up: %s",
                format_size(self.budget),
                consequence,
            )

    def disk_failed(self, exc: OSError, consequence: str) -> None:
        """Log (rate-limited, no traceback) that writing a temp file failed."""
        if exc.errno == errno.ENOSPC:
            cause = "no space left on device"
        elif exc.errno == errno.EDQUOT:
            cause = "disk quota exceeded"
        else:
            cause = exc.strerror or str(exc)
        if self._due(f"{cause}: {consequence}"):
            log.error("server.temp_path %s: %s: %s", self.path, cause, consequence)

    def _due(self, cause: str) -> bool:
        now = time.monotonic()
        last = self._reported.get(cause)
        if last is not None and now - last < REPORT_INTERVAL:
            return False
        self._reported[cause] = now
        return True


def default_space() -> TempSpace:
    """The space of callers that were given none: the system temp dir, the default budget."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TempSpace()
    return _DEFAULT


_DEFAULT: TempSpace | None = None
