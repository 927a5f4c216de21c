"""The upstream group's edge queue (max_conns, queue, queue_timeout) and fail-open."""

from __future__ import annotations

import asyncio

import pytest

from bext.config.schema import HealthConfig, UpstreamConfig, UpstreamServer
from bext.proxy.balancer import Lease, Overloaded, UpstreamGroup
from bext.shm.health import DOWN, HealthEntry, server_key
from bext.shm.layout import Segment


def group(
    *max_conns: int, queue: int = 1000, queue_timeout: float = 5.0, segment: Segment | None = None
) -> UpstreamGroup:
    servers = tuple(
        UpstreamServer(
            url=f"http://127.0.0.1:{8000 + i}", host="127.0.0.1", port=8000 + i, max_conns=limit
        )
        for i, limit in enumerate(max_conns)
    )
    config = UpstreamConfig(
        name="app",
        servers=servers,
        queue=queue,
        queue_timeout=queue_timeout,
        health=HealthConfig(enabled=True),
    )
    return UpstreamGroup(config, segment)


async def admit(g: UpstreamGroup) -> tuple[int, Lease]:
    return await g.admit(list(g.candidates()))


def test_waiters_get_in_in_arrival_order_as_requests_finish() -> None:
    async def main() -> list[int]:
        g = group(1)
        _, first = await admit(g)
        order: list[int] = []

        async def waiter(number: int) -> None:
            _, lease = await admit(g)
            order.append(number)
            await asyncio.sleep(0.01)
            lease.release()

        tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
        await asyncio.sleep(0.05)
        assert order == []  # all queued behind the one in flight
        first.release()
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_a_full_queue_refuses_at_once_and_a_long_wait_times_out() -> None:
    async def main() -> None:
        g = group(1, queue=1, queue_timeout=0.2)
        await admit(g)
        waiting = asyncio.create_task(admit(g))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="queue is full"):
            await admit(g)
        with pytest.raises(Overloaded, match=r"queue_timeout \(0.2s\)"):
            await waiting

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_the_next_one_moves_up() -> None:
    async def main() -> None:
        g = group(1, queue=2)
        _, first = await admit(g)
        gone = asyncio.create_task(admit(g))
        behind = asyncio.create_task(admit(g))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away
        await asyncio.sleep(0.01)
        first.release()
        async with asyncio.timeout(2):
            _, lease = await behind
        lease.release()
        await admit(g)  # nothing left counted: the place is free again

    asyncio.run(main())


def test_the_next_server_with_room_is_taken_before_waiting() -> None:
    async def main() -> None:
        g = group(1, 1, queue=0)
        pools = list(g.candidates())
        index, _ = await g.admit(pools)
        again, _ = await g.admit(pools)
        assert {index, again} == {0, 1}  # the first pick was full: the other one
        with pytest.raises(Overloaded):  # both full, and no queue
            await g.admit(pools)

    asyncio.run(main())


def test_every_server_down_by_its_checks_still_gets_requests() -> None:
    segment = Segment()
    g = group(0, 0, segment=segment)
    for port in (8000, 8001):
        HealthEntry(segment, server_key("app", f"http://127.0.0.1:{port}")).set_state(DOWN, 3)
    assert [pool.server.port for pool in g.candidates()] in ([8000, 8001], [8001, 8000])
    assert not g.limited
