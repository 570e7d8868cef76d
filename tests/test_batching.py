"""MicroBatcher: batches fill up to the limit, big requests split, results return in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.batching import MicroBatcher
from core.errors import ServiceUnavailable


async def test_concurrent_requests_share_batches_and_keep_order():
    batches: list[int] = []

    def double(items):
        batches.append(len(items))
        return [x * 2 for x in items]

    batcher = MicroBatcher(double, max_batch_size=8, max_wait_s=0.05)
    requests = [list(range(i * 3, i * 3 + 3)) for i in range(6)]  # 6 requests × 3 items
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    await batcher.close()
    assert results == [[x * 2 for x in r] for r in requests]
    assert sum(batches) == 18
    assert max(batches) == 8  # requests were merged and split at the batch limit
    assert len(batches) == 3


async def test_a_request_larger_than_a_batch_is_split():
    sizes: list[int] = []

    def ident(items):
        sizes.append(len(items))
        return list(items)

    batcher = MicroBatcher(ident, max_batch_size=4, max_wait_s=0)
    out = await batcher.submit(list(range(10)))
    await batcher.close()
    assert out == list(range(10))
    assert sizes == [4, 4, 2]


async def test_model_runs_off_the_event_loop_thread():
    seen = []

    def where(items):
        seen.append(threading.current_thread() is threading.main_thread())
        return items

    batcher = MicroBatcher(where, max_batch_size=4, max_wait_s=0)
    await batcher.submit([1])
    await batcher.close()
    assert seen == [False]


async def test_model_error_fails_only_that_batch():
    calls = 0

    def flaky(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return items

    batcher = MicroBatcher(flaky, max_batch_size=4, max_wait_s=0)
    with pytest.raises(RuntimeError, match="boom"):
        await batcher.submit([1])
    assert await batcher.submit([2]) == [2]
    await batcher.close()


async def test_queue_timeout_rejects_requests_that_waited_too_long():
    release = threading.Event()

    def slow(items):
        release.wait(2)
        return items

    batcher = MicroBatcher(slow, max_batch_size=1, max_wait_s=0, queue_timeout_s=0.05)
    first = asyncio.create_task(batcher.submit([1]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batcher.submit([2]))
    await asyncio.sleep(0.15)
    release.set()
    assert await first == [1]
    with pytest.raises(ServiceUnavailable) as info:
        await second
    assert info.value.status == 503 and "Retry-After" in info.value.headers
    await batcher.close()


async def test_cancelled_request_is_skipped():
    seen: list[int] = []
    gate = threading.Event()

    def record(items):
        gate.wait(2)
        seen.extend(items)
        return items

    batcher = MicroBatcher(record, max_batch_size=1, max_wait_s=0)
    first = asyncio.create_task(batcher.submit([1]))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batcher.submit([2]))
    await asyncio.sleep(0.01)
    second.cancel()
    gate.set()
    assert await first == [1]
    await asyncio.sleep(0.05)
    await batcher.close()
    assert seen == [1]


async def test_queue_timeout_fires_while_the_batch_ahead_still_runs():
    release = threading.Event()

    def held(items):
        release.wait()  # holds the model until the test lets go
        return items

    batcher = MicroBatcher(held, max_batch_size=1, max_wait_s=0, queue_timeout_s=0.05)
    first = asyncio.create_task(batcher.submit([1]))
    await asyncio.sleep(0.01)
    try:
        # The model is still held, so only the timer can answer this request.
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(batcher.submit([2]), 30)
        assert not first.done()
    finally:
        release.set()
    assert await first == [1]
    await batcher.close()
