"""A worker's admission bookkeeping: a slot reserved at accept is claimed by the
connection, returned if no connection comes of it, and follows an h2c hand-over."""

from __future__ import annotations

from bext.limits.connections import ConnectionLimits
from bext.shm.counters import NullCounters
from bext.shm.layout import Segment
from bext.shm.peers import PeerTable, peer_key


class Counting(NullCounters):
    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def connection_refused(self) -> None:
        self.refused += 1


def limits(segment: Segment, pid: int, connections: set[object], per_ip: int = 2,
           trusted: tuple[str, ...] = ()) -> tuple[ConnectionLimits, Counting]:  # fmt: skip
    counters = Counting()
    table = PeerTable(segment, pid)
    return ConnectionLimits(connections, counters, 4, per_ip, table, trusted), counters


def test_reserve_admit_leave_and_refuse() -> None:
    segment = Segment()
    open_: set[object] = set()
    worker, counters = limits(segment, 11, open_)
    other, _ = limits(segment, 12, set())
    key = peer_key("192.0.2.9")
    assert worker.reserve("192.0.2.9")
    assert other.reserve("192.0.2.9")
    assert not worker.reserve("192.0.2.9")  # two held by two workers: the third is refused
    assert counters.refused == 1
    first, second = object(), object()
    assert worker.admit(first, "192.0.2.9")  # claims the reservation, counts nothing new
    assert PeerTable(segment, 1).total(key) == 2
    other.unreserve("192.0.2.9")  # its handshake failed
    assert PeerTable(segment, 1).total(key) == 1
    assert worker.admit(second, "192.0.2.9")  # not reserved (HTTP/3 path): checked here
    assert not worker.admit(object(), "192.0.2.9")
    assert counters.refused == 2
    new = object()
    worker.hand_over(second, new)  # h2c: the same connection, another protocol object
    worker.left(first)
    worker.left(second)  # no longer the holder: releases nothing
    assert PeerTable(segment, 1).total(key) == 1
    worker.left(new)
    assert PeerTable(segment, 1).total(key) == 0


def test_full_counts_handshakes_and_trusted_proxies_are_exempt() -> None:
    segment = Segment()
    open_: set[object] = {object(), object()}
    worker, _ = limits(segment, 13, open_, per_ip=1, trusted=("10.0.0.0/8",))
    assert not worker.full()
    worker.pending.update({object(), object()})
    assert worker.full()  # 2 open + 2 in their TLS handshake = max_connections 4
    for _ in range(5):
        assert worker.reserve("10.1.2.3")  # a load balancer speaks for many clients
    assert worker.reserve("192.0.2.1")
    assert not worker.reserve("192.0.2.1")
    rooms = []
    worker.on_room = lambda: rooms.append(1)
    worker.left(object())
    assert rooms == [1]
