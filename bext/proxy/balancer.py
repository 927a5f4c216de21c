"""Upstream groups: weighted round-robin, a passive cool-down, fail-open, and the edge queue.

Smooth weighted round-robin (nginx's algorithm) spreads a server of weight 3 as
a a b a rather than a a a b. Which servers are usable comes from the shared health table
(:mod:`bext.shm.health`), so all workers agree: active checks from the master's prober,
and passive marks — a failed connect takes a server out for ``COOL_DOWN`` seconds for
every worker. When no server is usable, every one is tried anyway (fail open, like
Envoy's panic threshold; the master logs the transition): a probe that cannot pass must
not take a live site down, while a server that refuses connections still answers with a
fast ``502``.

A server with ``max_conns`` takes at most that many requests in flight from the whole
master, all workers together (a limit per worker would multiply with the worker count),
counted in the shared health table (:class:`~bext.shm.health.InFlight`). A request that
finds every server at its limit waits in its worker's queue of the group, in arrival
order, for at most ``queue_timeout``; a request that finishes in the worker wakes the
first waiter at once, and that first waiter also looks every ``QUEUE_POLL`` for room
another worker freed. Beyond ``queue`` waiting requests, or after ``queue_timeout``, the
request is refused (:class:`Overloaded`, answered ``503`` with ``Retry-After``). This is
how bext queues bursts at the edge instead of piling them into the app server's backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

from bext.config.schema import UpstreamConfig
from bext.limits.throttle import LogThrottle
from bext.proxy.pool import ConnectionPool
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.health import LOCK_REGION, HealthEntry, InFlight, server_key
from bext.shm.layout import Segment
from bext.shm.locks import StripedLock

log = logging.getLogger("bext")

COOL_DOWN = 5.0
QUEUE_POLL = 0.005
"""How often the first waiter of a worker's queue looks for room freed by other workers."""
OVERLOAD_LOG_INTERVAL = 10.0
"""At most one log line per upstream and worker this often about refused requests."""
RETRY_AFTER = b"5"
"""``Retry-After`` (seconds) of a ``503`` for a request refused by the queue."""


class Overloaded(Exception):
    """Every server is at ``max_conns`` and the request cannot wait (any longer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _LocalInFlight:
    """In-flight counting without a shared segment (tests, tools): this process only."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def take(self, limit: int) -> bool:
        if self.count >= limit:
            return False
        self.count += 1
        return True

    def give_back(self) -> None:
        if self.count > 0:
            self.count -= 1


class Lease:
    """One request's place on a server: :meth:`release` ends it (once, on every path)."""

    __slots__ = ("_group", "_slots")

    def __init__(self, group: UpstreamGroup, slots: InFlight | _LocalInFlight | None) -> None:
        self._group = group
        self._slots = slots

    def release(self) -> None:
        slots = self._slots
        if slots is None:
            return
        self._slots = None
        slots.give_back()
        self._group.wake()


class _Waiter:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class _Peer:
    __slots__ = ("current", "down_until", "health", "pool", "weight")

    def __init__(self, pool: ConnectionPool, weight: int, health: HealthEntry | None) -> None:
        self.pool = pool
        self.weight = weight
        self.current = 0
        self.down_until = 0.0
        self.health = health

    def usable(self, now: float) -> bool:
        if self.health is not None:
            return self.health.healthy()
        return self.down_until <= now


class UpstreamGroup:
    def __init__(self, config: UpstreamConfig, segment: Segment | None = None) -> None:
        self.name = config.name
        self.config = config
        self._peers = [
            _Peer(
                ConnectionPool(
                    server,
                    config.keepalive,
                    config.connect_timeout_ms / 1000,
                    config.read_timeout_ms / 1000,
                ),
                server.weight,
                HealthEntry(segment, server_key(config.name, server.url)) if segment else None,
            )
            for server in config.servers
        ]
        # Servers with max_conns, by pool. One counter per health entry: a URL listed twice
        # is one server (and one process must not hold two cells of one entry).
        self._slots: dict[ConnectionPool, InFlight | _LocalInFlight] = {}
        shared: dict[int, InFlight] = {}
        lock = StripedLock(segment, LOCK_REGION) if segment is not None else None
        for peer in self._peers:
            if not peer.pool.server.max_conns:
                continue
            if peer.health is None or lock is None:
                self._slots[peer.pool] = _LocalInFlight()
            else:
                slots = shared.get(peer.health.index)
                if slots is None:
                    slots = shared[peer.health.index] = InFlight(peer.health, lock)
                self._slots[peer.pool] = slots
        self.index = 0
        """The group's place in the configuration: its row in the upstream metrics."""
        self.counters: SlotCounters = NullCounters()
        """The worker's slot, for the proxy's upstream counters (``Pipeline.bind_counters``):
        one per group, whatever wraps the handlers that use it (the cache, the WAF)."""
        self.limited = bool(self._slots)
        """Some server has ``max_conns``: requests go through :meth:`admit`."""
        self._waiters: deque[_Waiter] = deque()
        self._overload_log = LogThrottle(OVERLOAD_LOG_INTERVAL)

    def servers_up(self) -> list[tuple[str, bool]]:
        """Each server's URL and whether it is taken now (its health, or its cool-down)."""
        now = time.monotonic()
        return [(peer.pool.label, peer.usable(now)) for peer in self._peers]

    def candidates(self) -> list[ConnectionPool]:
        """Pools to try for one request: the round-robin pick first, then the others."""
        peers = self._peers
        if len(peers) == 1:
            return [peers[0].pool]  # the usual single server: tried whatever its health
        now = time.monotonic()
        live = [peer for peer in peers if peer.usable(now)]
        if not live:
            # Every server failed its checks or a connect: try them all anyway (fail open).
            # One that refuses connections still gives a fast 502; one that only fails its
            # probe (wrong Host, a view that errors) keeps the site up.
            live = peers
        best = live[0]
        for peer in live:
            peer.current += peer.weight
            if peer.current > best.current:
                best = peer
        best.current -= sum(peer.weight for peer in live)
        order = [best.pool]
        order += [peer.pool for peer in live if peer is not best]
        order += [peer.pool for peer in peers if peer not in live]
        return order

    # -- max_conns and the queue -----------------------------------------------------------

    async def admit(self, pools: Sequence[ConnectionPool]) -> tuple[int, Lease]:
        """The first of ``pools`` (in order of preference) with room, and the request's
        place on it; waits in this worker's queue while none has room.

        Raises :class:`Overloaded` when the queue is full or the wait reaches
        ``queue_timeout``. Cancelling the wait leaves nothing behind.
        """
        waiters = self._waiters
        if not waiters:
            taken = self._take(pools)
            if taken is not None:
                return taken
        config = self.config
        if len(waiters) >= config.queue:
            raise self._overloaded(f"the queue is full ({len(waiters)} waiting)")
        loop = asyncio.get_running_loop()
        waiter = _Waiter()
        waiters.append(waiter)
        queued_at = loop.time()
        deadline = queued_at + config.queue_timeout
        try:
            while True:
                first = waiters[0] is waiter
                if first:
                    taken = self._take(pools)
                    if taken is not None:
                        return taken
                now = loop.time()
                if now >= deadline:
                    raise self._overloaded(
                        f"no server had room within queue_timeout ({config.queue_timeout:g}s)"
                    )
                waiter.future = loop.create_future()
                try:
                    async with asyncio.timeout(min(deadline - now, QUEUE_POLL) if first
                                               else deadline - now):  # fmt: skip
                        await waiter.future
                except TimeoutError:
                    pass
        finally:
            self.counters.metrics.queue_wait(self.index, loop.time() - queued_at)
            waiter.future = None
            first = waiters[0] is waiter
            waiters.remove(waiter)
            if first:
                self.wake()  # the next in line tries now (room may be left, or it is first)

    def wake(self) -> None:
        """A request of this worker finished: the first waiter tries at once."""
        if self._waiters:
            self._waiters[0].wake()

    def _take(self, pools: Sequence[ConnectionPool]) -> tuple[int, Lease] | None:
        slots_of = self._slots
        for index, pool in enumerate(pools):
            slots = slots_of.get(pool)
            if slots is None:
                return index, Lease(self, None)  # no max_conns on this server
            if slots.take(pool.server.max_conns):
                return index, Lease(self, slots)
        return None

    def _overloaded(self, reason: str) -> Overloaded:
        if self._overload_log.due():
            log.warning(
                "upstream %s: every server is at max_conns and %s; answering 503 "
                "(this message at most every %gs)",
                self.name,
                reason,
                OVERLOAD_LOG_INTERVAL,
            )
        return Overloaded(reason)

    # -- passive marks -----------------------------------------------------------------------

    def mark_failed(self, pool: ConnectionPool) -> None:
        """A connect failed: every worker skips the server for ``COOL_DOWN`` seconds."""
        for peer in self._peers:
            if peer.pool is pool:
                peer.down_until = time.monotonic() + COOL_DOWN
                if peer.health is not None:
                    peer.health.mark_failed(COOL_DOWN)

    def mark_ok(self, pool: ConnectionPool) -> None:
        for peer in self._peers:
            if peer.pool is pool and peer.down_until:
                peer.down_until = 0.0

    def close(self) -> None:
        for peer in self._peers:
            peer.pool.close()
