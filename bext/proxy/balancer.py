"""Upstream groups: weighted round-robin over servers, with a passive cool-down.

Smooth weighted round-robin (nginx's algorithm) spreads a server of weight 3 as
a a b a rather than a a a b. Which servers are usable comes from the shared health table
(:mod:`bext.shm.health`), so all workers agree: active checks from the master's prober,
and passive marks — a failed connect takes a server out for ``COOL_DOWN`` seconds for
every worker. With active checks on and every server down, a request gets an immediate
502; with passive marks only, all servers are tried anyway (better a fast attempt than a
certain 502).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from bext.config.schema import UpstreamConfig
from bext.proxy.pool import ConnectionPool
from bext.shm.health import HealthEntry, server_key
from bext.shm.layout import Segment

COOL_DOWN = 5.0


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
        self.active_checks = config.health.enabled
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

    def candidates(self) -> Iterator[ConnectionPool]:
        """Pools to try for one request: the round-robin pick first, then the others."""
        peers = self._peers
        now = time.monotonic()
        live = [peer for peer in peers if peer.usable(now)]
        if not live:
            if self.active_checks:
                return  # every server failed its checks: a fast 502 until a probe passes
            live = peers  # passive marks only: better a fast attempt than a certain 502
        if len(peers) == 1:
            yield live[0].pool
            return
        best = live[0]
        for peer in live:
            peer.current += peer.weight
            if peer.current > best.current:
                best = peer
        best.current -= sum(peer.weight for peer in live)
        yield best.pool
        for peer in live:
            if peer is not best:
                yield peer.pool
        for peer in peers:
            if peer not in live:
                yield peer.pool

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
