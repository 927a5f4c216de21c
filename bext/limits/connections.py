"""A worker's admission of connections: ``max_connections`` and ``max_connections_per_ip``.

``max_connections`` (per worker) is never enforced by refusing: the worker's acceptors
(:mod:`bext.worker.accept`) stop taking connections from the kernel while the worker is
:meth:`~ConnectionLimits.full`, so a connection beyond the limit waits in the listening
socket's queue, untouched (no TLS handshake, no reset), and is accepted once another one
closes. TLS connections still in their handshake count (:attr:`~ConnectionLimits.pending`):
a flood of handshakes cannot push the worker past its limit either.

``max_connections_per_ip`` is shared by every worker of the master through the segment's
client table (:class:`~bext.shm.peers.PeerTable`). A TCP connection is checked the moment
it is accepted, before any TLS handshake (:meth:`~ConnectionLimits.reserve`), and one over
the limit is closed at once and counted (``connections_refused`` in ``bext status``). The
connection object the protocol builds later claims that reservation in
:meth:`~ConnectionLimits.admit` (a QUIC connection reserves and claims the same way), and
gives it back when it closes (:meth:`~ConnectionLimits.left`). Peers listed in
``server.trusted_proxies`` are exempt: a load balancer speaks for many clients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from bext.limits.throttle import LogThrottle
from bext.proxy.headers import TrustedProxies
from bext.shm.counters import SlotCounters
from bext.shm.peers import ADMITTED, REFUSED, PeerTable, peer_key

log = logging.getLogger("bext")


class ConnectionLimits:
    """The connection limits of one worker (one object, shared by all its listeners)."""

    __slots__ = (
        "_connections",
        "_counters",
        "_exempt",
        "_held",
        "_peers",
        "_per_ip",
        "_refusals",
        "_reserved",
        "max_connections",
        "on_room",
        "pending",
    )  # fmt: skip

    def __init__(
        self,
        connections: Collection[object],
        counters: SlotCounters,
        max_connections: int,
        max_per_ip: int = 0,
        peers: PeerTable | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._connections = connections
        """The worker's open connections (``WorkerState.connections``), by reference."""
        self._counters = counters
        self.max_connections = max_connections
        self._per_ip = max_per_ip
        self._peers = peers if max_per_ip > 0 else None
        self._exempt = TrustedProxies(trusted_proxies)
        self.pending: set[object] = set()
        """Protocols accepted but not admitted yet: TLS connections in their handshake."""
        self._reserved: dict[str, list[int]] = {}
        """Per-IP slots taken at accept time, by address, not claimed yet (key, or 0 when
        the slot is not counted in the table)."""
        self._held: dict[object, int] = {}
        """Admitted connections whose address counts in the shared table: their key."""
        self._refusals = LogThrottle()
        self.on_room: Callable[[], None] | None = None
        """Called when a connection or a pending handshake ends (accepting may resume)."""

    @property
    def open_count(self) -> int:
        """Connections admitted and open now."""
        return len(self._connections)

    def full(self) -> bool:
        """Whether the worker holds ``max_connections`` (handshakes included)."""
        return len(self._connections) + len(self.pending) >= self.max_connections

    # -- per address ---------------------------------------------------------------------

    def reserve(self, peer: str) -> bool:
        """At accept time: take a slot for ``peer``; False (counted) if it has none left."""
        peers = self._peers
        if peers is None or not peer or self._exempt.trusts(peer):
            return True
        key = peer_key(peer)
        verdict = peers.acquire(key, self._per_ip)
        if verdict == REFUSED:
            self._refused(peer)
            return False
        self._reserved.setdefault(peer, []).append(key if verdict == ADMITTED else 0)
        return True

    def unreserve(self, peer: str) -> None:
        """A reserved connection ended before it was admitted (its handshake failed)."""
        slots = self._reserved.get(peer)
        if not slots:
            return
        key = slots.pop()
        if not slots:
            del self._reserved[peer]
        if key and self._peers is not None:
            self._peers.release(key)

    def admit(self, conn: object, peer: str) -> bool:
        """The protocol object of a connection from ``peer`` starts; False if refused."""
        self.pending.discard(conn)
        peers = self._peers
        if peers is None:
            return True
        slots = self._reserved.get(peer)
        if slots:
            key = slots.pop()
            if not slots:
                del self._reserved[peer]
        elif not peer or self._exempt.trusts(peer):
            return True
        else:
            key = peer_key(peer)
            verdict = peers.acquire(key, self._per_ip)
            if verdict == REFUSED:
                self._refused(peer)
                return False
            if verdict != ADMITTED:
                key = 0
        if key:
            self._held[conn] = key
        return True

    def hand_over(self, old: object, new: object) -> None:
        """The connection goes on under another protocol object (h2c)."""
        key = self._held.pop(old, 0)
        if key:
            self._held[new] = key

    def left(self, conn: object) -> None:
        """An admitted connection has closed."""
        key = self._held.pop(conn, 0)
        if key and self._peers is not None:
            self._peers.release(key)
        self.room()

    def room(self) -> None:
        on_room = self.on_room
        if on_room is not None:
            on_room()

    def _refused(self, peer: str) -> None:
        self._counters.connection_refused()
        count = self._refusals.due()
        if count:
            log.warning(
                "client %s holds server.max_connections_per_ip = %d connections already; "
                "closing its new ones (%d refused since the last such line)",
                peer,
                self._per_ip,
                count,
            )
