"""systemd notifications (``Type=notify``), sent only by the master.

``READY=1`` once every worker of the first generation listens; ``RELOADING=1`` with
``MONOTONIC_USEC`` when a reload starts and ``READY=1`` when its workers are ready;
``STOPPING=1``; a ``STATUS=`` line; ``WATCHDOG=1`` when systemd asks for it
(``WATCHDOG_USEC``); ``MAINPID=`` after a binary upgrade. Without ``NOTIFY_SOCKET`` every
call is a no-op.
"""

from __future__ import annotations

import os
import time

from sdnotify import SystemdNotifier


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = SystemdNotifier() if self.enabled else None
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else 0.0
        self._last_watchdog = 0.0

    def send(self, *fields: str) -> None:
        if self._sd is not None:
            self._sd.notify("\n".join(fields))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def main_pid(self, pid: int, status: str) -> None:
        self.send(f"MAINPID={pid}", "READY=1", f"STATUS={status}")

    def watchdog(self) -> None:
        """Pet the watchdog if it is due (called from every loop turn)."""
        if self.watchdog_interval:
            now = time.monotonic()
            if now - self._last_watchdog >= self.watchdog_interval:
                self._last_watchdog = now
                self.send("WATCHDOG=1")
