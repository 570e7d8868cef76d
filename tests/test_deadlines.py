"""The request path's deadlines (``core.deadlines``) keep asyncio's ``timeout_at`` contract: a block
past its deadline ends in TimeoutError, never before the deadline and at most a tick after it;
only its own cancellation becomes TimeoutError; a block that ends in time leaves nothing behind."""

from __future__ import annotations

import asyncio
import random

import pytest
import uvloop

from core import deadlines
from core.deadlines import TICK_S, timeout, timeout_at

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
SLACK_S = 0.25  # a busy machine runs the loop late; a deadline is still never met early


def _run(factory, coro):
    loop = factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    return lambda coro: _run(LOOPS[request.param], coro)


def test_blocks_past_their_deadline_end_in_timeout_error_never_early(run):
    async def main():
        loop = asyncio.get_running_loop()
        rng = random.Random(3)

        async def block(delay: float, work: float):
            when = loop.time() + delay
            try:
                async with timeout_at(when):
                    await asyncio.sleep(work)
            except TimeoutError:
                return "timeout", loop.time() - when
            return "done", loop.time() - when

        cases = [(rng.uniform(0, 0.06), rng.choice([0.0, 0.001, 0.03, 0.2])) for _ in range(300)]
        results = await asyncio.gather(*(block(d, w) for d, w in cases))
        for (delay, work), (outcome, late) in zip(cases, results, strict=True):
            if work >= delay + TICK_S + SLACK_S:
                assert outcome == "timeout", (delay, work)
            if outcome == "timeout":
                assert -1e-3 <= late <= TICK_S + SLACK_S, (delay, work, late)  # loop.time() has ms steps
            if work == 0.0 and delay > 0.01:
                assert outcome == "done"
        assert not deadlines._wheel().slots  # every block left the wheel
        await asyncio.sleep(3 * TICK_S)
        assert deadlines._wheel().timer is None  # and with nothing in it, it stops

    run(main())


@pytest.mark.parametrize("inner_first", [True, False])
def test_nested_blocks_and_foreign_cancellation_behave_as_asyncio_timeout(run, inner_first):
    async def scenario(timeout_at_):
        loop = asyncio.get_running_loop()
        log = []
        outer_s, inner_s = (0.2, 0.02) if inner_first else (0.02, 0.2)
        try:
            async with timeout_at_(loop.time() + outer_s):
                try:
                    async with timeout_at_(loop.time() + inner_s):
                        await asyncio.sleep(1)
                except TimeoutError:
                    log.append("inner timeout")
                except asyncio.CancelledError:
                    log.append("inner cancelled")
                    raise
                await asyncio.sleep(0.3 if inner_first else 0)
        except TimeoutError:
            log.append("outer timeout")
        log.append(asyncio.current_task().cancelling())
        return log

    async def main():
        return await scenario(timeout_at), await scenario(asyncio.timeout_at)

    ours, theirs = run(main())
    assert ours == theirs and ours[-1] == 0


def test_a_cancellation_from_outside_stays_a_cancellation(run):
    async def main():
        loop = asyncio.get_running_loop()

        async def waits():
            async with timeout_at(loop.time() + 5):
                await asyncio.sleep(5)

        task = asyncio.create_task(waits())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadlines._wheel().slots

    run(main())


def test_a_deadline_already_past_ends_the_block_at_its_first_wait(run):
    async def main():
        loop = asyncio.get_running_loop()
        async with timeout(10):  # the wheel turning already: the past deadline goes to its next tick
            for when in (loop.time() - 1, loop.time()):
                with pytest.raises(TimeoutError):
                    async with timeout_at(when):
                        await asyncio.sleep(1)
        with pytest.raises(TimeoutError):
            async with timeout(-1):
                await asyncio.sleep(1)
        async with timeout(0.5):  # a block that ends in time: nothing raised later
            await asyncio.sleep(0)
        await asyncio.sleep(0.6)

    run(main())


def test_a_block_that_catches_its_own_cancellation_is_not_turned_into_timeout_error(run):
    async def scenario(timeout_):
        async with timeout_(0.01):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                pass
        return asyncio.current_task().cancelling()

    async def main():
        return await scenario(timeout), await scenario(asyncio.timeout)

    assert run(main()) == (0, 0)


def test_the_wheel_ticks_once_per_tick_while_a_block_waits(run, monkeypatch):
    """A timer due on a tick's boundary must not run again and again while the loop's millisecond
    clock still reads the tick before (uvloop): at most one tick per TICK_S, however busy."""
    ticks = []
    tick = deadlines._Wheel._tick
    monkeypatch.setattr(deadlines._Wheel, "_tick", lambda self: (ticks.append(1), tick(self)))

    async def main():
        async with timeout(10):
            await asyncio.sleep(0.5)

    run(main())
    assert 0 < len(ticks) <= 0.5 / TICK_S + 3
