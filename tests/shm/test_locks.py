"""StripedLock excludes forked processes from each other on a shared word."""

from __future__ import annotations

import os

from bext.shm.layout import RATE_OFFSET, Segment
from bext.shm.locks import StripedLock
from tests.support.forking import run_forked


def test_forked_processes_increment_a_shared_word_without_losing_updates() -> None:
    segment = Segment()
    lock = StripedLock(segment, region=0)
    index = RATE_OFFSET
    per_child, children = 3000, 4

    def work(_: int) -> None:
        for _ in range(per_child):
            with lock.hold(7):
                value = segment.words[index]
                os.sched_yield()  # invite the race the lock must prevent
                segment.words[index] = value + 1

    run_forked(children, work)
    assert segment.words[index] == per_child * children
