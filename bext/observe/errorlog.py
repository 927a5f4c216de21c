"""The error log: Python logging to stderr or a file, with the process role in each line."""

from __future__ import annotations

import logging
import sys
import time

LOGGER_NAME = "bext"
log = logging.getLogger(LOGGER_NAME)


class _Formatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__("%(asctime)sZ [%(levelname)s] " + role + ": %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))


def configure_error_log(level: str, target: str, role: str) -> None:
    """Route the ``bext`` logger to ``target`` ("stderr" or a file path) at ``level``."""
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target)
    handler.setFormatter(_Formatter(role))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def set_role(role: str) -> None:
    """Relabel the log lines after fork (``master`` becomes ``worker 2``)."""
    for handler in log.handlers:
        handler.setFormatter(_Formatter(role))
