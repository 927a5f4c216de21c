"""Upstream groups: weighted round-robin over servers, with a passive cool-down.

Smooth weighted round-robin (nginx's algorithm) spreads a server of weight 3 as
a a b a rather than a a a b. A server whose connect failed is skipped for ``COOL_DOWN``
seconds unless every server is cooling down, in which case all are tried: better a fast
attempt than a certain 502.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from bext.config.schema import UpstreamConfig
from bext.proxy.pool import ConnectionPool

COOL_DOWN = 5.0


class _Peer:
    __slots__ = ("current", "down_until", "pool", "weight")

    def __init__(self, pool: ConnectionPool, weight: int) -> None:
        self.pool = pool
        self.weight = weight
        self.current = 0
        self.down_until = 0.0


class UpstreamGroup:
    def __init__(self, config: UpstreamConfig) -> None:
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
            )
            for server in config.servers
        ]

    def candidates(self) -> Iterator[ConnectionPool]:
        """Pools to try for one request: the round-robin pick first, then the others."""
        peers = self._peers
        if len(peers) == 1:
            yield peers[0].pool
            return
        now = time.monotonic()
        live = [peer for peer in peers if peer.down_until <= now] or peers
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
        for peer in self._peers:
            if peer.pool is pool:
                peer.down_until = time.monotonic() + COOL_DOWN

    def mark_ok(self, pool: ConnectionPool) -> None:
        for peer in self._peers:
            if peer.pool is pool and peer.down_until:
                peer.down_until = 0.0

    def close(self) -> None:
        for peer in self._peers:
            peer.pool.close()
