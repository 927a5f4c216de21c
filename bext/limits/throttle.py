"""Log a repeated event at most once per interval, saying how often it happened since."""

from __future__ import annotations

import time

LOG_INTERVAL = 60.0
"""At most one log line per this many seconds for each kind of refusal or pause."""


class LogThrottle:
    """Once per interval for a repeated event, and how many times it happened since."""

    __slots__ = ("_interval", "_last", "_since")

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._last = -interval
        self._since = 0

    def due(self) -> int:
        """0 if this occurrence should not be logged; else how many it stands for."""
        self._since += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return 0
        self._last = now
        count, self._since = self._since, 0
        return count
