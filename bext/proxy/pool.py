"""Per-worker keep-alive pools: idle upstream connections, one pool per server."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable

from bext.config.schema import UpstreamServer
from bext.proxy.connection import UpstreamConnection, UpstreamError

IDLE_TIMEOUT = 30.0
"""Idle pooled connections older than this are closed by bext rather than by the upstream."""


class PooledConnection(UpstreamConnection):
    """An upstream connection that says when the request it carries is over for the server.

    ``on_finished`` (set by the proxy handler when a request goes out, for ``max_conns``)
    runs once, at the first of: the response is complete and the connection goes back to
    the pool, or the connection is gone (closed after the response, aborted, failed, or a
    tunnel that ended). That is when the server is done with the request, whether or not
    the client has read the response yet.
    """

    on_finished: Callable[[], None] | None = None

    def finished(self) -> None:
        callback = self.on_finished
        if callback is not None:
            self.on_finished = None
            callback()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self.on_finished is not None:
                # On the next turn of the loop: the transport closes the socket only after
                # this returns, and the server must see it closed before the request this
                # frees opens the next one (or the two overlap at the server for a moment).
                self.loop.call_soon(self.finished)


class ConnectionPool:
    def __init__(
        self, server: UpstreamServer, keepalive: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self.server = server
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: deque[PooledConnection] = deque()
        self.label = server.url
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(
        self, max_idle_age: float = IDLE_TIMEOUT, fresh: bool = False
    ) -> PooledConnection:
        """A pooled connection (newest first) or a new one. Raises UpstreamError.

        Pooled connections idle for longer than ``max_idle_age`` are closed, not used;
        ``fresh`` skips the pool (a retry after a stale keep-alive connection).
        """
        if not fresh:
            conn = self.take_idle(max_idle_age)
            if conn is not None:
                return conn
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return await self._connect(loop)

    def take_idle(self, max_idle_age: float = IDLE_TIMEOUT) -> PooledConnection | None:
        """The newest pooled connection idle for less than ``max_idle_age``, or None.

        Synchronous, so that the common case (a warm pool) costs the proxy no coroutine;
        older ones are closed on the way.
        """
        idle = self._idle
        if not idle:
            return None
        loop = self._loop
        if loop is None:  # a pool lives in one worker's loop; asking each time costs a getpid
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < max_idle_age:
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> PooledConnection:
        server = self.server
        conn = PooledConnection(self.read_timeout, self._release)
        try:
            async with asyncio.timeout(self.connect_timeout):
                if server.unix_path is not None:
                    await loop.create_unix_connection(lambda: conn, str(server.unix_path))
                else:
                    assert server.host is not None and server.port is not None
                    await loop.create_connection(lambda: conn, server.host, server.port)
        except TimeoutError:
            raise UpstreamError(f"connect to {self.label} timed out", connect_failed=True) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamError(
                f"connect to {self.label} failed: {reason}", connect_failed=True
            ) from None
        if conn.transport is not None and server.unix_path is None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _release(self, conn: UpstreamConnection) -> None:
        """Called by a connection whose response completed and that may be reused."""
        if not isinstance(conn, PooledConnection):
            conn.close()  # not one of ours
            return
        if conn.on_finished is not None:
            conn.finished()
        if len(self._idle) >= self.keepalive:
            conn.close()
            return
        self._idle.append(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
