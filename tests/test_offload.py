"""The bounded pool for large work: a request's work that is still waiting for a thread when the
request's deadline passes never starts (the caller already has its 504); work already running is
left to finish, and counted. Order, not timing: the pool is held full by jobs the test releases."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from core import offload
from core.errors import DeadlineExceeded
from core.offload import STATS, WORKERS, off_loop


async def _until(condition) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


async def _hold_every_thread(gate: threading.Event) -> list[asyncio.Future]:
    running = STATS.running
    blockers = [asyncio.ensure_future(off_loop(gate.wait)) for _ in range(WORKERS)]
    await _until(lambda: STATS.running == running + WORKERS)
    return blockers


async def test_work_still_queued_when_its_deadline_passes_never_starts():
    gate, ran = threading.Event(), []
    blockers = await _hold_every_thread(gate)
    before = dataclasses.replace(STATS)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(DeadlineExceeded):
            await off_loop(ran.append, "late", deadline=loop.time() + 0.05)
    finally:
        gate.set()
        await asyncio.gather(*blockers)
    await asyncio.gather(*(off_loop(ran.append, "after") for _ in range(WORKERS)))  # queued behind it
    assert ran == ["after"] * WORKERS  # the late job never ran
    assert STATS.dropped == before.dropped + 1 and STATS.overran == before.overran


async def test_work_running_when_its_caller_leaves_is_left_to_finish_and_counted():
    gate, started = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        gate.wait()
        return "done"

    before = dataclasses.replace(STATS)
    task = asyncio.ensure_future(off_loop(work))
    await _until(started.is_set)
    task.cancel()  # the client left (a deadline passing takes the same path)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert STATS.overran == before.overran + 1 and STATS.dropped == before.dropped
    gate.set()
    await _until(lambda: STATS.running == before.running)
    assert STATS.jobs == before.jobs + 1


def test_the_pool_is_bounded():
    assert offload._pool._max_workers == WORKERS
