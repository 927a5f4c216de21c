"""Accepting TCP connections, and stopping to accept while the worker is full.

A worker serves the listening sockets of its slot with one :class:`Acceptor` each: a
reader callback that calls ``accept()`` itself (at most :data:`ACCEPT_BATCH` per wake-up)
and hands every connection to ``loop.connect_accepted_socket``, which runs the TLS
handshake when the listener has one. Doing the accept ourselves, instead of
``loop.create_server``, is what makes the limits exact:

* **max_connections**: before each ``accept()`` the acceptor asks whether the worker is
  full (:meth:`~bext.limits.connections.ConnectionLimits.full`, handshakes included).
  If it is, every acceptor of the worker stops reading (:class:`AcceptGate`), so the
  connection stays queued in the kernel, untouched, until a connection closes; then they
  read again, the listeners in turn first, so a flood on one port cannot starve another.
  uvloop's servers accept every queued connection in one go (libuv's accept loop runs
  until EAGAIN), and closing a server from its protocol factory closes the connection it
  is accepting: neither can stop at a limit. That the worker was full is logged at most
  once per minute, as nginx logs "worker_connections are not enough".
* **max_connections_per_ip**: the peer address is known at ``accept()``, before any TLS
  handshake, so a connection over its address's limit is closed right there.
* A failed ``accept()`` for lack of descriptors (EMFILE, ENFILE) or memory pauses the
  acceptors for :data:`RETRY_AFTER_ERROR` seconds instead of spinning on a socket that
  stays readable.

The listening sockets belong to the master (one per worker slot, kept for its whole life);
reading or not never touches them, and the worker closes only its own copies when it
stops.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from bext.limits.connections import ConnectionLimits
from bext.limits.throttle import LogThrottle
from bext.worker.alpn import AlpnDispatcher
from bext.worker.context import WorkerContext

log = logging.getLogger("bext")

ACCEPT_BATCH = 16
"""Connections taken per wake-up of one listener before other work gets a turn."""

RETRY_AFTER_ERROR = 0.5
"""Seconds without accepting after ``accept()`` failed for want of descriptors or memory."""

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class AcceptGate:
    """Every acceptor of one worker: they read together, and pause together when full."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.acceptors: list[Acceptor] = []
        self.paused = False
        self.closed = False
        self._full_log = LogThrottle()
        self._error_log = LogThrottle()
        self._retry: asyncio.TimerHandle | None = None
        limits.on_room = self.room

    def add(self, acceptor: Acceptor) -> None:
        self.acceptors.append(acceptor)
        if not self.paused and not self.closed:
            acceptor.start_reading()

    def full(self) -> None:
        """An acceptor found the worker full: stop reading until there is room again."""
        self._pause()
        count = self._full_log.due()
        if count:
            limits = self.limits
            log.warning(
                "server.max_connections = %d reached (%d open, %d in their TLS handshake): "
                "not accepting new ones until some close, they wait in the listen queue "
                "(paused %d times since the last such line)",
                limits.max_connections,
                limits.open_count,
                len(limits.pending),
                count,
            )

    def room(self) -> None:
        """A connection or a handshake ended: read again if the worker has room."""
        if self.paused and self._retry is None and not self.closed and not self.limits.full():
            self._resume()

    def accept_failed(self, exc: OSError) -> None:
        if exc.errno not in _OUT_OF_RESOURCES:
            log.debug("accept failed: %s", exc)
            return
        count = self._error_log.due()
        if count:
            log.error(
                "accept failed: %s (%d times since the last such line); not accepting for "
                "%.1fs (raise the open files limit, LimitNOFILE=, or lower "
                "server.max_connections)",
                exc.strerror,
                count,
                RETRY_AFTER_ERROR,
            )
        self._pause()
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_AFTER_ERROR, self._retried)

    def close(self) -> None:
        """The worker stops: no more accepting, ever; close this process's socket copies."""
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for acceptor in self.acceptors:
            acceptor.close()

    def _retried(self) -> None:
        self._retry = None
        self.room()

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            for acceptor in self.acceptors:
                acceptor.stop_reading()

    def _resume(self) -> None:
        self.paused = False
        acceptors = self.acceptors
        if len(acceptors) > 1:
            acceptors.append(acceptors.pop(0))  # another listener goes first next time
        for acceptor in acceptors:
            acceptor.start_reading()


class _TlsDispatcher(AlpnDispatcher):
    """The ALPN dispatcher, telling the limits when its handshake is over."""

    __slots__ = ("_limits",)

    def __init__(self, ctx: WorkerContext, limits: ConnectionLimits) -> None:
        super().__init__(ctx)
        self._limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._limits.pending.discard(self)  # the connection it builds is admitted now
        self._ctx.counters.metrics.tls_handshake()  # asyncio calls this once TLS is up
        super().connection_made(transport)


class Acceptor:
    """Accepts the connections of one listening socket and starts their protocol."""

    def __init__(
        self,
        gate: AcceptGate,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self._gate = gate
        self._limits = gate.limits
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._loop = asyncio.get_running_loop()
        self._options: dict[str, Any] = {}
        if tls is not None:
            self._options = {"ssl": tls, "ssl_handshake_timeout": handshake_timeout,
                             "ssl_shutdown_timeout": 5.0}  # fmt: skip
        self._reading = False
        self._starting: set[asyncio.Task[None]] = set()

    @classmethod
    def tls(cls, gate: AcceptGate, sock: socket.socket, ctx: WorkerContext,
            context: ssl.SSLContext) -> Acceptor:  # fmt: skip
        """An acceptor for a TLS listener: HTTP/2 or HTTP/1.1 by ALPN."""
        limits = gate.limits
        return cls(gate, sock, lambda: _TlsDispatcher(ctx, limits), context, ctx.timeouts.header)

    def start_reading(self) -> None:
        if not self._reading and self._fd >= 0:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def close(self) -> None:
        self.stop_reading()
        if self._fd >= 0:
            self._fd = -1
            self._sock.close()  # this process's copy; the master keeps the queue alive

    def _on_readable(self) -> None:
        limits = self._limits
        sock = self._sock
        for _ in range(ACCEPT_BATCH):
            if limits.full():
                self._gate.full()
                return
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._gate.accept_failed(exc)
                return
            peer = str(address[0]) if isinstance(address, tuple) else ""
            if not limits.reserve(peer):
                conn.close()  # over max_connections_per_ip: before any TLS, at once
                continue
            conn.setblocking(False)
            protocol = self._factory()
            limits.pending.add(protocol)
            task = self._loop.create_task(self._start(protocol, conn, peer))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, protocol: asyncio.Protocol, conn: socket.socket, peer: str) -> None:
        limits = self._limits
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, conn, **self._options)
        except OSError as exc:  # the handshake failed or timed out, the client went away
            log.debug("client %s: connection not established: %s", peer, exc)
        except Exception:
            log.exception("client %s: connection not established", peer)
        finally:
            if protocol in limits.pending:  # never admitted: the handshake failed
                limits.pending.discard(protocol)
                limits.unreserve(peer)
            limits.room()
