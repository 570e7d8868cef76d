"""``core.slots.Slots``: never more holders than slots, first come first served, and a cancelled
waiter neither loses a slot nor keeps one."""

from __future__ import annotations

import asyncio
import random

import pytest

from core.slots import Slots


async def test_a_free_slot_is_taken_at_once_and_the_last_one_makes_it_locked():
    slots = Slots(2)
    assert slots.take_now() and not slots.locked()
    assert slots.take_now() and slots.locked()
    assert not slots.take_now()
    slots.give()
    assert not slots.locked() and slots.free == 1


async def test_waiters_are_served_in_arrival_order_and_a_newcomer_does_not_overtake_them():
    slots = Slots(1)
    assert slots.take_now()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await slots.take()
        order.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    slots.give()  # handed to waiter 0, which has not run yet
    assert slots.locked() and not slots.take_now()  # nobody overtakes a waiter
    for _ in range(3):
        await asyncio.sleep(0)
        slots.give()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert slots.free == 1


@pytest.mark.parametrize("given_before_it_runs", [False, True])
async def test_a_waiter_cancelled_while_waiting_leaves_the_line(given_before_it_runs):
    """Cancelled while it waits: it leaves the line, whether its task runs its handler before the
    slot is given back or ``give`` meets the cancelled waiter first and passes it over."""
    slots = Slots(1)
    assert slots.take_now()
    task = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    task.cancel()  # its future is cancelled now; the task has not run its handler yet
    if given_before_it_runs:
        slots.give()
    with pytest.raises(asyncio.CancelledError):
        await task
    if not given_before_it_runs:
        assert slots.locked()  # still held by the first taker, nobody waits
        slots.give()
    assert not slots.locked() and slots.free == 1


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on():
    slots = Slots(1)
    assert slots.take_now()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # handed to ``first``...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to the next in line
    slots.give()
    assert slots.free == 1


@pytest.mark.parametrize("seed", range(20))
async def test_under_random_holders_and_cancellations_no_more_than_count_hold_and_none_is_lost(seed):
    rnd = random.Random(seed)
    count = rnd.randint(1, 4)
    slots = Slots(count)
    holding = 0
    most = 0

    async def holder() -> None:
        nonlocal holding, most
        if not slots.take_now():
            await slots.take()
        holding += 1
        most = max(most, holding)
        try:
            for _ in range(rnd.randint(0, 3)):
                await asyncio.sleep(0)
        finally:
            holding -= 1
            slots.give()

    tasks = [asyncio.create_task(holder()) for _ in range(40)]
    for _ in range(30):
        await asyncio.sleep(0)
        victim = rnd.choice(tasks)
        if rnd.random() < 0.3:
            victim.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert most <= count
    assert holding == 0 and slots.free == count and not slots.locked()
