"""Which batch runs next, what is dropped, what is refused: the scheduler's order, asserted with a
gated fake model (each batch runs only when the test releases it), never with latencies."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import RateLimited, ServiceUnavailable
from core.scheduling import BULK, BULK_EVERY, Bounds, Scheduler, Tenant, Work
from tests.support.gated import GatedModel
from tests.support.timed import TimedModel
from tests.support.timed import inputs as timed_inputs

A, B, C = Tenant("a"), Tenant("b"), Tenant("c")


class Seen:
    """A QueueObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.refusals: list[str] = []
        self.cancelled_items = 0
        self.depths: list[int] = []

    def depth(self, items):
        self.depths.append(items)

    def waited(self, seconds):
        pass

    def batch(self, items):
        pass

    def refused(self, reason):
        self.refusals.append(reason)

    def cancelled(self, items):
        self.cancelled_items += items

    def capacity(self, fixed, per_token, seconds, estimated):
        pass


async def _blocked(scheduler: Scheduler, model: GatedModel) -> asyncio.Task:
    """Hold the model with one batch, so what is submitted next queues up."""
    task = asyncio.create_task(scheduler.submit(Work(["block"], model.run, tenant=Tenant("blocker"))))
    await model.started(1)
    return task


def _items(tag: str, n: int) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


async def _drain(model: GatedModel, tasks: list[asyncio.Task]) -> None:
    while not all(t.done() for t in tasks):
        model.release()
        await asyncio.sleep(0.001)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_small_request_shares_the_next_batch_with_another_tenants_bulk_job():
    model = GatedModel()
    scheduler = Scheduler("m", quantum=1)
    blocker = await _blocked(scheduler, model)
    bulk = asyncio.create_task(scheduler.submit(Work(_items("a", 64), model.run, tenant=A, max_batch_size=8)))
    await _settle()
    ping = asyncio.create_task(scheduler.submit(Work(["b0"], model.run, tenant=B, max_batch_size=8)))
    await _settle()
    model.release()
    await model.started(2)
    assert "b0" in model.batches[1]  # not after the 8 batches of the bulk job
    await _drain(model, [blocker, bulk, ping])
    assert await bulk == _items("a", 64) and await ping == ["b0"]
    await scheduler.close()


@pytest.mark.parametrize("speed", [(0.001, 0.0001), (0.5, 0.0001)], ids=["per-token-bound", "call-bound"])
async def test_another_tenants_long_inputs_are_not_padded_into_a_short_requests_batch(speed):
    """A one-sentence request waits for one batch of its length, not for another key's long inputs
    padded into it, and goes first when the key in turn has only long inputs left (never twice in a
    row: the long ones lead the batch after); where a call's fixed cost dominates (a GPU), padding
    is cheap and they share batches as before."""
    model = TimedModel(*speed, gated=True)
    scheduler = Scheduler("m", quantum=64, speed=speed, clock=model.clock)
    per_token = speed[0] < 0.01  # 8 tokens alone: 1.8 ms; padded to 100 with 7 more: 81 ms

    async def one(tag: str) -> asyncio.Task:
        task = asyncio.create_task(scheduler.submit(Work(timed_inputs(tag, 1, 8), model.run, tenant=A,
                                                         costs=[8.0], max_batch_size=8)))
        await _settle()
        return task

    blocker = asyncio.create_task(scheduler.submit(Work(timed_inputs("block", 1, 8), model.run, tenant=C)))
    await model.started(1)
    ping = await one("a")
    bulk = asyncio.create_task(scheduler.submit(Work(timed_inputs("b", 24, 100), model.run, tenant=B,
                                                     costs=[100.0] * 24, max_batch_size=8)))
    await _settle()
    model.release()
    await model.started(2)
    names = [[name for name, _ in batch] for batch in model.batches]
    if per_token:
        assert names[1] == ["a0"]
    else:
        assert names[1][0] == "a0" and len(names[1]) == 8
    model.release()
    await model.started(3)  # B alone leads the next batch
    # A short request arriving meanwhile goes first, alone, once B's batch ends...
    late = await one("late")
    model.release()
    await model.started(4)
    names = [[name for name, _ in batch] for batch in model.batches]
    assert len(names[2]) == 8 and all(x.startswith("b") for x in names[2])
    if per_token:
        assert names[3] == ["late0"]
    else:
        assert "late0" in names[3] and len(names[3]) > 1  # with B's last input
    # ... but B is never passed over twice in a row: it leads the next batch, and a short input
    # does join a batch of long ones (no padding added).
    third = await one("third")
    model.release()
    await model.started(5)
    names = [[name for name, _ in batch] for batch in model.batches]
    assert "third0" in names[4] and any(x.startswith("b") for x in names[4])
    await _drain(model, [blocker, ping, bulk, late, third])
    assert [name for name, _ in await bulk] == [f"b{i}" for i in range(24)]
    await scheduler.close()


async def test_weights_set_each_tenants_share_of_a_batch():
    model = GatedModel()
    scheduler = Scheduler("m", quantum=1)
    blocker = await _blocked(scheduler, model)
    heavy = asyncio.create_task(scheduler.submit(
        Work(_items("a", 40), model.run, tenant=Tenant("a", weight=3), max_batch_size=8)))
    light = asyncio.create_task(scheduler.submit(Work(_items("b", 40), model.run, tenant=B, max_batch_size=8)))
    await _settle()
    model.release()
    await model.started(2)
    batch = model.batches[1]
    assert sum(x.startswith("a") for x in batch) == 6 and sum(x.startswith("b") for x in batch) == 2
    await _drain(model, [blocker, heavy, light])
    await scheduler.close()


async def test_within_one_tenant_a_new_small_request_goes_before_its_bulk_jobs_rest():
    model = GatedModel()
    scheduler = Scheduler("m", quantum=1)
    blocker = await _blocked(scheduler, model)
    bulk = asyncio.create_task(scheduler.submit(Work(_items("a", 64), model.run, tenant=A, max_batch_size=8)))
    await _settle()
    model.release()
    await model.started(2)  # the bulk job has had a batch
    ping = asyncio.create_task(scheduler.submit(Work(["p"], model.run, tenant=A, max_batch_size=8)))
    await _settle()
    model.release()
    await model.started(3)
    assert model.batches[2][0] == "p"
    await _drain(model, [blocker, bulk, ping])
    await scheduler.close()


async def test_interactive_goes_first_and_bulk_still_gets_a_batch_now_and_then():
    model = GatedModel()
    scheduler = Scheduler("m")
    blocker = await _blocked(scheduler, model)
    n = BULK_EVERY + 2
    bulk = asyncio.create_task(scheduler.submit(
        Work(["bulk"], model.run, tenant=Tenant("bulk", priority=BULK), max_batch_size=1)))
    await _settle()
    interactive = [asyncio.create_task(scheduler.submit(Work([f"i{k}"], model.run, tenant=A, max_batch_size=1)))
                   for k in range(n)]
    await _settle()
    await _drain(model, [blocker, bulk, *interactive])
    order = [b[0] for b in model.batches[1:]]
    assert order.index("bulk") == BULK_EVERY  # after BULK_EVERY interactive batches, not after all of them
    assert order[:BULK_EVERY] == [f"i{k}" for k in range(BULK_EVERY)]
    await scheduler.close()


async def test_abandoned_work_leaves_the_queue_at_once_and_never_runs():
    model = GatedModel()
    seen = Seen()
    scheduler = Scheduler("m", observer=seen)
    blocker = await _blocked(scheduler, model)
    gone = asyncio.create_task(scheduler.submit(Work(_items("gone", 100), model.run, tenant=A, max_batch_size=8)))
    kept = asyncio.create_task(scheduler.submit(Work(["kept"], model.run, tenant=B, max_batch_size=8)))
    await _settle()
    assert scheduler.queued_items == 101
    gone.cancel()
    await _settle()
    assert scheduler.queued_items == 1 and seen.cancelled_items == 100
    await _drain(model, [blocker, kept])
    assert not any(x.startswith("gone") for batch in model.batches for x in batch)
    assert seen.depths[-1] == 0
    await scheduler.close()


async def test_abandoned_whole_call_that_is_running_is_cancelled():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def upstream(items, own):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return items

    scheduler = Scheduler("m")
    call = asyncio.create_task(scheduler.submit(Work([None], upstream, split=False)))
    await asyncio.wait_for(started.wait(), 5)
    call.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)
    await scheduler.close()


async def test_a_tenant_over_its_queue_bound_gets_429_and_others_are_admitted():
    model = GatedModel()
    seen = Seen()
    scheduler = Scheduler("m", observer=seen)
    blocker = await _blocked(scheduler, model)
    capped = Tenant("a", max_queued=10)
    first = asyncio.create_task(scheduler.submit(Work(_items("a", 8), model.run, tenant=capped)))
    await _settle()
    with pytest.raises(RateLimited) as info:
        await scheduler.submit(Work(_items("a", 5), model.run, tenant=capped))
    assert info.value.status == 429 and "Retry-After" in info.value.headers
    other = asyncio.create_task(scheduler.submit(Work(_items("b", 5), model.run, tenant=B)))
    await _settle()
    assert seen.refusals == ["key_bound"]
    await _drain(model, [blocker, first, other])
    await scheduler.close()


async def test_over_the_models_bound_a_hog_gets_429_a_newcomer_503_and_a_fair_share_is_admitted():
    model = GatedModel()
    seen = Seen()
    scheduler = Scheduler("m", observer=seen)
    bounds = Bounds(max_items=10)
    blocker = await _blocked(scheduler, model)
    tasks = [asyncio.create_task(scheduler.submit(Work(_items("a", 10), model.run, tenant=A, bounds=bounds)))]
    await _settle()  # the queue is full
    with pytest.raises(RateLimited):  # over the bound, and 'a' has more than its share queued
        await scheduler.submit(Work(_items("a", 5), model.run, tenant=A, bounds=bounds))
    with pytest.raises(ServiceUnavailable) as info:  # a newcomer at a full queue, over its share
        await scheduler.submit(Work(_items("c", 6), model.run, tenant=C, bounds=bounds))
    assert info.value.code == "model_saturated" and 1 <= int(info.value.headers["Retry-After"]) <= 60
    # within its share (a third of the bound): admitted over the bound, served in its turn
    tasks.append(asyncio.create_task(scheduler.submit(Work(_items("b", 3), model.run, tenant=B, bounds=bounds))))
    await _settle()
    assert seen.refusals == ["key_share", "saturated"]
    assert scheduler.queued_items == 13
    await _drain(model, [blocker, *tasks])
    await scheduler.close()


async def test_a_newcomers_big_request_is_admitted_while_the_queue_is_within_bounds():
    model = GatedModel()
    scheduler = Scheduler("m")
    bounds = Bounds(max_items=10)
    blocker = await _blocked(scheduler, model)
    small = asyncio.create_task(scheduler.submit(Work(_items("a", 2), model.run, tenant=A, bounds=bounds)))
    await _settle()
    big = asyncio.create_task(scheduler.submit(Work(_items("b", 30), model.run, tenant=B, bounds=bounds)))
    await _settle()
    assert scheduler.queued_items == 32  # the bound is on what waits ahead of it, not on its own size
    await _drain(model, [blocker, small, big])
    assert await big == _items("b", 30)
    await scheduler.close()


async def test_a_request_cancelled_as_its_batch_ahead_ends_does_not_stall_the_worker():
    gate = asyncio.Event()

    async def run(items, own):
        await gate.wait()
        return items

    scheduler = Scheduler("m")
    follower: dict[str, asyncio.Task] = {}

    async def first_caller():
        answer = await scheduler.submit(Work(["first"], run, tenant=A))
        follower["task"].cancel()  # in the tick the slot is released: its done callback runs later
        return answer

    first = asyncio.create_task(first_caller())
    await _settle()
    follower["task"] = asyncio.create_task(scheduler.submit(Work(["second"], run, tenant=B)))
    await _settle()
    gate.set()
    # A worker spinning without yielding would hold the loop: wait_for could never fire.
    assert await asyncio.wait_for(first, 5) == ["first"]
    assert await asyncio.wait_for(scheduler.submit(Work(["after"], run, tenant=B)), 5) == ["after"]
    assert scheduler.queued_items == 0
    await scheduler.close()


async def test_closing_answers_callers_whose_batch_is_running():
    model = GatedModel()
    scheduler = Scheduler("m")
    running = asyncio.create_task(scheduler.submit(Work(["x"], model.run)))
    await model.started(1)
    await scheduler.close()
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(running, 5)


async def test_work_that_would_miss_its_deadline_is_refused_up_front():
    async def measured(items, own):
        await asyncio.sleep(0.02)
        return items

    model = GatedModel()
    scheduler = Scheduler("m")
    for _ in range(4):  # the model's speed is known now
        await scheduler.submit(Work(_items("warm", 10), measured, costs=[100.0] * 10))
    blocker = await _blocked(scheduler, model)
    loop = asyncio.get_running_loop()
    queued = asyncio.create_task(scheduler.submit(Work(_items("a", 100), model.run, tenant=A,
                                                       costs=[10_000.0] * 100)))
    await _settle()
    with pytest.raises(ServiceUnavailable) as info:  # its own key's hours of work queued ahead, a second to go
        await scheduler.submit(Work(["a"], model.run, tenant=A, costs=[100.0], deadline=loop.time() + 1.0))
    assert "deadline" in info.value.message and info.value.status == 503
    # Another key's request is served in its turn (fair queueing): the same deadline is no reason to refuse it.
    other = asyncio.create_task(scheduler.submit(Work(["b"], model.run, tenant=B, costs=[100.0],
                                                      deadline=loop.time() + 1.0)))
    await _settle()
    assert not other.done()
    other.cancel()
    queued.cancel()
    await _drain(model, [blocker])
    await scheduler.close()


async def test_batches_hold_similar_lengths_and_stay_under_the_token_budget():
    model = GatedModel()
    scheduler = Scheduler("m")
    costs = [5, 250, 5, 250, 30, 5, 250, 5]
    items = [f"x{i}" for i in range(len(costs))]
    job = asyncio.create_task(scheduler.submit(Work(items, model.run, costs=costs, max_batch_size=4,
                                                    max_batch_tokens=600)))
    await _drain(model, [job])
    assert await job == items  # answered in the caller's order
    by_cost = [[costs[int(x[1:])] for x in batch] for batch in model.batches]
    assert by_cost == [[5, 5, 5, 5], [30, 250], [250, 250]]  # 3 × 250 > 600 padded tokens
    await scheduler.close()


@pytest.mark.parametrize("kind", ["whole", "other-group", "same-group"])
async def test_a_tenant_passed_over_for_shorter_inputs_leads_the_next_batch(kind):
    """However steadily another key sends short requests, the key whose long inputs were passed
    over for them leads the batch after: a whole call, or work that cannot share a batch with the
    short ones, is not put behind them again and again."""
    speed = (0.001, 0.0001)  # per-token bound: 8 tokens alone cost a tenth of 100
    model = TimedModel(*speed, gated=True)
    scheduler = Scheduler("m", quantum=64, speed=speed, clock=model.clock)
    blocker = asyncio.create_task(scheduler.submit(Work(timed_inputs("block", 1, 8), model.run, tenant=C)))
    await model.started(1)
    long = Work(timed_inputs("x", 4, 100), model.run, tenant=A, costs=[100.0] * 4, max_batch_size=8,
                split=kind != "whole", group="x" if kind == "other-group" else None)
    x = asyncio.create_task(scheduler.submit(long))
    shorts = []
    for n in range(4):  # B keeps a short request waiting before every batch
        shorts.append(asyncio.create_task(scheduler.submit(Work(timed_inputs(f"y{n}-", 1, 8), model.run, tenant=B,
                                                                 costs=[8.0], max_batch_size=8))))
        await _settle()
        model.release()
        await model.started(n + 2)
    names = [[name for name, _ in batch] for batch in model.batches]
    assert names[1] == ["y0-0"]  # the short request went first, in a batch of its length
    assert any(name.startswith("x") for name in names[2])  # and the long ones right after it
    await _drain(model, [blocker, x, *shorts])
    assert [name for name, _ in await x] == ["x0", "x1", "x2", "x3"]
    await scheduler.close()
