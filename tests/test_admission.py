"""The issue's sequences at the door of a model, on a fake model whose batches take exactly
``fixed + per_token × padded`` seconds on its own clock and run only when the test releases them:
what is admitted, refused (and how) and answered, never how long anything took."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import RateLimited, ServiceUnavailable, TooLargeForDeadline
from core.scheduling import Bounds, Scheduler, Tenant, Work
from tests.support.timed import TimedModel, inputs
from tests.test_scheduling_order import _drain, _settle

A, B = Tenant("a"), Tenant("b")
FIXED, PER_TOKEN = 0.02, 0.0002  # about the embedded MiniLM on two cores
BOUNDS = Bounds(max_items=16384, max_seconds=10.0)  # a route's defaults
TIMEOUT = 30.0  # the route's timeout: each request's deadline


def _work(items, run, tenant, loop) -> Work:
    return Work(items, run, tenant=tenant, costs=[float(t) for _, t in items], max_batch_size=32, bounds=BOUNDS,
                deadline=loop.time() + TIMEOUT)


async def _warm(scheduler: Scheduler, model: TimedModel, *, full: bool) -> None:
    """The model has run one-sentence requests (and full batches too with ``full``)."""
    loop = asyncio.get_running_loop()
    for k in range(4):
        job = asyncio.create_task(scheduler.submit(_work(inputs(f"w{k}", 1, 12), model.run, Tenant("warm"), loop)))
        if full:
            job2 = asyncio.create_task(scheduler.submit(_work(inputs(f"f{k}", 32, 16), model.run, Tenant("warm"),
                                                              loop)))
            await _drain(model, [job, job2])
        else:
            await _drain(model, [job])


@pytest.fixture
async def model_and_scheduler():
    model = TimedModel(FIXED, PER_TOKEN, gated=True)
    scheduler = Scheduler("minilm", clock=model.clock)
    yield model, scheduler
    model.release(10_000)
    await scheduler.close()


async def test_2048_short_inputs_after_one_sentence_requests_of_the_same_key_are_admitted_and_answered(
        model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=False)  # what the model has measured: one-sentence batches only
    sentences = [asyncio.create_task(scheduler.submit(_work(inputs(f"s{k}", 1, 12), model.run, A, loop)))
                 for k in range(3)]
    await model.started(len(model.batches) + 1)  # one runs, two wait
    bulk = asyncio.create_task(scheduler.submit(_work(inputs("bulk", 2048, 12), model.run, A, loop)))
    await _settle()
    assert not bulk.done()  # admitted: not refused
    await _drain(model, [*sentences, bulk])
    assert len(await bulk) == 2048
    assert [len(await s) for s in sentences] == [1, 1, 1]


async def test_a_request_no_idle_model_could_finish_in_time_is_refused_at_once_with_413(model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=True)
    with pytest.raises(TooLargeForDeadline) as info:  # 64 batches of 32 × 500 tokens: ~200 s
        await scheduler.submit(_work(inputs("huge", 2048, 500), model.run, A, loop))
    error = info.value
    assert error.status == 413 and error.code == "request_too_large_for_deadline"
    assert error.headers["x-should-retry"] == "false" and "Batch API" in error.message
    fit = int(error.message.split("about ")[2].split(" inputs")[0])
    assert 0 < fit < 2048  # how many of them would fit
    assert scheduler.queued_items == 0


async def test_a_request_that_fits_once_the_queue_drains_gets_503_with_retry_after(model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=True)
    first = asyncio.create_task(scheduler.submit(_work(inputs("one", 2048, 40), model.run, A, loop)))  # ~18 s
    await model.started(len(model.batches) + 1)
    with pytest.raises(ServiceUnavailable) as info:  # ~18 s more behind its own ~18 s: past 30 s
        await scheduler.submit(_work(inputs("two", 2048, 40), model.run, A, loop))
    assert info.value.status == 503 and "deadline" in info.value.message
    assert 1 <= int(info.value.headers["Retry-After"]) <= 60
    first.cancel()


async def test_one_sentence_of_key_a_is_admitted_and_served_while_key_bs_big_request_runs(model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=True)
    big = asyncio.create_task(scheduler.submit(_work(inputs("b", 2048, 40), model.run, B, loop)))  # ~18 s of work
    await model.started(len(model.batches) + 1)
    for k in range(20):
        ping = asyncio.create_task(scheduler.submit(_work(inputs(f"a{k}", 1, 12), model.run, A, loop)))
        await _settle()
        assert not ping.done()  # admitted, not refused
        before = len(model.batches)
        await _drain(model, [ping])
        assert len(model.batches) - before <= 2  # in the next batch (behind the one running at most)
        assert await ping == inputs(f"a{k}", 1, 12)
    assert not big.done()  # B's request still running: A was served beside it, not after it
    await _drain(model, [big])
    assert len(await big) == 2048


async def test_key_bs_request_bigger_than_the_deadline_is_refused_at_once_and_key_a_is_served(model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=True)
    with pytest.raises(TooLargeForDeadline):  # 2,048 inputs of ~100 tokens: ~42 s here
        await scheduler.submit(_work(inputs("b", 2048, 100), model.run, B, loop))
    ping = asyncio.create_task(scheduler.submit(_work(inputs("a", 1, 12), model.run, A, loop)))
    await _drain(model, [ping])
    assert await ping == inputs("a", 1, 12)


async def test_a_key_within_its_share_is_admitted_however_much_another_key_has_queued(model_and_scheduler):
    model, scheduler = model_and_scheduler
    loop = asyncio.get_running_loop()
    await _warm(scheduler, model, full=True)
    tight = Bounds(max_items=100, max_seconds=1.0)
    # Admitted by the idle model: three times the bounds queued (over twice them, where a
    # newcomer used to be refused whatever its size).
    hog = asyncio.create_task(scheduler.submit(Work(inputs("b", 300, 40), model.run, tenant=B, costs=[40.0] * 300,
                                                    bounds=tight)))
    await model.started(len(model.batches) + 1)
    with pytest.raises(RateLimited) as info:  # B is over the bounds and over its share: B is refused
        await scheduler.submit(Work(inputs("b-more", 20, 40), model.run, tenant=B, costs=[40.0] * 20,
                                    bounds=tight, deadline=loop.time() + TIMEOUT))
    assert info.value.code == "queue_share_exceeded"
    ping = asyncio.create_task(scheduler.submit(Work(inputs("a", 1, 12), model.run, tenant=A, costs=[12.0],
                                                     bounds=tight, deadline=loop.time() + TIMEOUT)))
    await _settle()
    assert not ping.done()
    await _drain(model, [ping, hog])
    assert await ping == inputs("a", 1, 12)


def test_work_near_its_deadline_is_refused_with_room_to_spare_and_what_the_message_offers_is_admitted():
    """An estimate is only good to about a fifth: work estimated at 0.9 of its deadline on the idle
    model is refused at once (413), not admitted to end in a 504; the number of inputs the 413 says
    fit is admitted, and one more than that is not."""
    import re

    from core.scheduling.admission import MARGIN, Arrival, admit
    from core.scheduling.capacity import Capacity, Load

    capacity = Capacity(speed=(0.0, 0.001))  # 1 ms a padded token, no cost per call

    def arrival(n: int, left: float) -> Arrival:
        work = Work([("x", 100.0)] * n, None, tenant=A, costs=[100.0] * n, split=False, deadline=left)
        return Arrival(work, n, Load(1.0, 100.0 * n), 0, Load(), 0, Load(), 1.0, now=0.0)

    n = 90  # 9 s alone against a 10 s deadline
    with pytest.raises(TooLargeForDeadline) as info:
        admit("m", arrival(n, 10.0), capacity, lambda reason: None)
    fit = int(re.search(r"about (\d+) inputs fit now", info.value.message).group(1))
    assert fit == int(10.0 / (0.1 * MARGIN))
    admit("m", arrival(fit, 10.0), capacity, lambda reason: None)  # admitted: returns
    with pytest.raises(TooLargeForDeadline):
        admit("m", arrival(fit + 1, 10.0), capacity, lambda reason: None)
