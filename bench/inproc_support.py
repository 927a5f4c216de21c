"""What the in-process benchmarks (``inproc_proxy.py``, ``inproc_h2.py``) share.

A worker's context built from a configuration text the way a worker builds it (a real
shared segment and counter block, so the per-response metrics are part of the cost), and
the timing loop: a warm-up, the best of ``INPROC_BATCHES`` (default 5) batches of 5,000
requests, then a cProfile of one more batch when asked.
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

from bext.config.load import parse_config
from bext.observe.accesslog import AccessLog
from bext.shm.counters import SlotCounters
from bext.shm.layout import Segment
from bext.worker import main as worker_main
from bext.worker.context import WorkerContext
from bext.worker.pipeline import Pipeline

BATCH = 5000


def worker_context(text: str) -> tuple[WorkerContext, Pipeline]:
    """The context of a worker serving the configuration ``text`` (TOML), and its pipeline
    (to ``close()`` when done: it holds the cache store, if any)."""
    config = parse_config(tomllib.loads(text), base_dir=Path("/tmp"))
    segment = Segment()
    pipeline = Pipeline(config, segment)
    counters = SlotCounters(segment, 0, 1, os.getpid())
    pipeline.bind_counters(counters)
    ctx = worker_main.build_context(config, pipeline, AccessLog("off"), counters)
    ctx.max_keepalive_requests = 10**9
    return ctx, pipeline


async def seconds_per_request(one: Callable[[], Awaitable[None]], top: int = 0) -> float:
    """The best batch's time per ``one()`` after a warm-up; with ``top``, also print the
    ``top`` most expensive functions of one more batch."""
    for _ in range(2000):
        await one()
    gc.collect()
    gc.freeze()  # as a worker does once it is ready (bext.worker.main)
    best = float("inf")
    for _ in range(int(os.environ.get("INPROC_BATCHES", "5"))):
        started = time.perf_counter()
        for _ in range(BATCH):
            await one()
        best = min(best, (time.perf_counter() - started) / BATCH)
    if top:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(BATCH):
            await one()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    return best
