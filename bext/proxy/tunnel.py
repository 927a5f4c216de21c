"""After ``101 Switching Protocols`` (WebSocket): pipe bytes both ways, nothing more.

bext does not parse WebSocket frames; it relays bytes with flow control in both directions
(a side that cannot keep up pauses reading on the other) and closes both sides when either
closes or when no byte has moved for ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("bext")


class TunnelEnd(Protocol):
    """One side of a tunnel: the client connection or the upstream connection."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class Tunnel:
    def __init__(self, upstream: TunnelEnd, idle_timeout: float) -> None:
        self._upstream = upstream
        self._client: TunnelEnd | None = None
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._pending_from_upstream: list[bytes] = []
        self.closed = False

    def attach_client(self, client: TunnelEnd, early_data: bytes) -> None:
        """The client side switched protocols; ``early_data`` arrived right behind the head."""
        self._client = client
        for data in self._pending_from_upstream:
            client.write(data)
        self._pending_from_upstream.clear()
        if early_data:
            self.from_client(early_data)
        self._timer = self._loop.call_at(self._last_activity + self._idle_timeout, self._on_timer)

    # -- data ----------------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        self._upstream.write(data)

    def from_upstream(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._client is None:
            self._pending_from_upstream.append(data)
        else:
            self._client.write(data)

    # -- flow control: a side that cannot write pauses reading on the other ------------

    def client_write_paused(self, paused: bool) -> None:
        if paused:
            self._upstream.pause_reading()
        else:
            self._upstream.resume_reading()

    def upstream_write_paused(self, paused: bool) -> None:
        if self._client is not None:
            if paused:
                self._client.pause_reading()
            else:
                self._client.resume_reading()

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._upstream.close()
        if self._client is not None:
            self._client.close()

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        deadline = self._last_activity + self._idle_timeout
        if deadline <= self._loop.time():
            log.info("tunnel idle for %.0fs: closing", self._idle_timeout)
            self.close()
            return
        self._timer = self._loop.call_at(deadline, self._on_timer)
