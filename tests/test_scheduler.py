"""The scheduler's mechanics: batches fill to the limit, big requests split, results return in
order, failures reach their batch only, queued work times out or is dropped when abandoned."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import ServiceUnavailable, UpstreamRejected
from core.scheduling import Scheduler, Work
from tests.support.gated import GatedModel


def _work(items, run, **kw) -> Work:
    return Work(items, run, **kw)


async def test_concurrent_requests_share_batches_and_keep_order():
    batches: list[int] = []

    async def double(items, own):
        batches.append(len(items))
        return [x * 2 for x in items]

    scheduler = Scheduler("double")
    requests = [list(range(i * 3, i * 3 + 3)) for i in range(6)]  # 6 requests × 3 items
    results = await asyncio.gather(*(scheduler.submit(_work(r, double, max_batch_size=8, max_wait_s=0.05))
                                     for r in requests))
    await scheduler.close()
    assert results == [[x * 2 for x in r] for r in requests]
    assert sum(batches) == 18
    assert max(batches) == 8  # requests were merged and split at the batch limit
    assert len(batches) == 3


@pytest.mark.parametrize(("spread", "sizes", "expected"), [(False, [4] * 8, [32]), (True, [4] * 8, [16, 16]),
                                                         (True, [32], [32])])
async def test_spread_shares_the_queue_out_over_the_free_slots(spread, sizes, expected):
    """With ``spread`` (a CPU model whose parallel batches share the cores) 8 requests × 4 inputs
    run as two batches of 16 at once on two slots, each answered in order; without it, as one of 32.
    A lone request of 32 is not cut up: alone, it runs as one batch on every core. The second share
    starts beside the first at once, without waiting for a batch to fill (a wait of a minute here)."""
    model = GatedModel()  # each batch runs until released: both are running before either ends
    scheduler = Scheduler("gated", max_in_flight=2, spread=spread)
    requests = [[(i, k) for k in range(n)] for i, n in enumerate(sizes)]
    answers = asyncio.gather(*(scheduler.submit(_work(r, model.run, max_batch_size=32, max_wait_s=60))
                               for r in requests))
    await model.started(len(expected))
    assert [len(b) for b in model.batches] == expected
    model.release(len(expected))
    assert await answers == requests
    await scheduler.close()


async def test_a_request_larger_than_a_batch_is_split():
    sizes: list[int] = []

    async def ident(items, own):
        sizes.append(len(items))
        return list(items)

    scheduler = Scheduler("ident")
    out = await scheduler.submit(_work(list(range(10)), ident, max_batch_size=4))
    await scheduler.close()
    assert out == list(range(10))
    assert sizes == [4, 4, 2]


async def test_a_batch_says_whether_it_is_one_jobs_own():
    owns: list[bool] = []

    async def record(items, own):
        owns.append(own)
        return items

    scheduler = Scheduler("own")
    await scheduler.submit(_work([1, 2], record))
    await asyncio.gather(*(scheduler.submit(_work([i], record, max_batch_size=8, max_wait_s=0.05))
                           for i in range(3)))
    await scheduler.close()
    assert owns == [True, False]


async def test_model_error_fails_only_that_batch():
    calls = 0

    async def flaky(items, own):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return items

    scheduler = Scheduler("flaky")
    with pytest.raises(RuntimeError, match="boom"):
        await scheduler.submit(_work([1], flaky))
    assert await scheduler.submit(_work([2], flaky)) == [2]
    await scheduler.close()


async def test_a_batch_failure_reaches_every_caller_of_that_batch():
    async def boom(items, own):
        raise UpstreamRejected("no", status=400)

    scheduler = Scheduler("boom")
    try:
        results = await asyncio.gather(scheduler.submit(_work([1], boom, max_wait_s=0.02)),
                                       scheduler.submit(_work([2], boom, max_wait_s=0.02)), return_exceptions=True)
        assert all(isinstance(r, UpstreamRejected) for r in results)
    finally:
        await scheduler.close()


async def test_calls_overlap_up_to_max_in_flight_and_keep_order():
    running = peak = 0

    async def double(items, own):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return [x * 2 for x in items]

    scheduler = Scheduler("double", max_in_flight=2)
    try:
        results = await asyncio.gather(*(scheduler.submit(_work([i, i + 100], double, max_batch_size=4))
                                         for i in range(10)))
        assert results == [[2 * i, 2 * (i + 100)] for i in range(10)]
        assert peak == 2  # a second batch started while the first was still out
        assert scheduler.idle
    finally:
        await scheduler.close()


async def test_queue_timeout_fires_while_the_batch_ahead_still_runs():
    model = GatedModel()
    scheduler = Scheduler("held", queue_timeout_s=0.05)
    first = asyncio.create_task(scheduler.submit(_work([1], model.run, max_batch_size=1)))
    await model.started(1)
    try:
        # The model is still held, so only the timer can answer this request.
        with pytest.raises(ServiceUnavailable) as info:
            await asyncio.wait_for(scheduler.submit(_work([2], model.run, max_batch_size=1)), 30)
        assert info.value.status == 503 and info.value.code == "queue_timeout"
        assert not first.done()
    finally:
        model.release()
    assert await first == [1]
    await scheduler.close()


async def test_work_that_is_not_split_runs_whole_in_a_batch_of_its_own():
    seen: list[list[int]] = []

    async def record(items, own):
        seen.append(list(items))
        return items

    scheduler = Scheduler("whole")
    await asyncio.gather(scheduler.submit(_work([1, 2, 3], record, split=False, max_batch_size=2)),
                         scheduler.submit(_work([4], record, max_batch_size=2, max_wait_s=0.02)))
    await scheduler.close()
    assert [1, 2, 3] in seen and [4] in seen


@pytest.mark.parametrize("bad", [0, -1])
def test_nonsense_in_flight_is_refused(bad):
    with pytest.raises(ValueError):
        Scheduler("x", max_in_flight=bad)


@pytest.mark.parametrize("seed", range(20))
async def test_a_batchs_ranking_picks_what_a_scan_of_every_job_picks(seed):
    """``Ranking`` (each flow's jobs ranked once per batch) gives the job ``TenantFlow.pick`` would
    give at every step of forming a batch: random jobs (split or whole, two groups, ages, costs),
    items taken one at a time as the worker takes them."""
    import random

    from core.scheduling.flows import UNSET, Job, Ranking, Shape, TenantFlow
    from core.scheduling.work import Tenant

    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    flow = TenantFlow(("t", 0), Tenant("t"))
    for seq in range(rng.randint(1, 40)):
        costs = [float(rng.randint(1, 300)) for _ in range(rng.randint(1, 6))]
        work = Work([None] * len(costs), None, costs=costs, group=rng.choice("ab"), split=rng.random() < 0.8)
        job = Job(work, costs, loop.create_future(), seq, flow, Shape(work, costs))
        job.enqueued -= rng.random() * 5
        if rng.random() < 0.1:
            job.future.cancel()  # abandoned: never picked
        flow.jobs.append(job)
    now, rate = loop.time(), rng.choice([0.0, 50.0, 5000.0])
    ranking, group, whole_ok = Ranking(flow, now, rate), UNSET, True
    for _ in range(200):
        expected = flow.pick(group, whole_ok, now, rate)
        assert ranking.pick(group, whole_ok) is expected
        if expected is None:
            break
        if not expected.work.split:  # a whole job is a batch of its own
            break
        group, whole_ok = expected.work.group, False
        expected.cost_left -= expected.costs[expected.order[expected.next]]
        expected.next += 1
