"""A cold model (no request ran yet) timed as it loaded: the calibration finds a fake model's exact
batch time ``fixed + per_token × padded`` on its own clock, and admission, knowing it, refuses at
once what the idle model could not finish before its deadline and admits (and answers) what fits
— where an untimed cold model admits anything and answers 504 at the deadline."""

from __future__ import annotations

import asyncio

import pytest

from adapters.local.calibration import calibrate, measure
from core.errors import TooLargeForDeadline
from core.scheduling import Bounds, Scheduler, Tenant, Work
from tests.support.timed import TimedModel, inputs
from tests.test_scheduling_order import _drain, _settle

FIXED, PER_TOKEN = 0.02, 0.0005  # a small model on two busy cores: 640 inputs of 100 tokens take ~32 s
TIMEOUT = 30.0


class FakeModel:
    """A batch of texts takes exactly ``FIXED + PER_TOKEN × padded`` on ``now``; a text is as many
    tokens as it has words, plus two specials. Its first call also loads it (ten times as long)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    @staticmethod
    def count(batch: list[str]) -> list[int]:
        return [len(text.split()) + 2 for text in batch]

    def run(self, batch: list[str]) -> None:
        padded = len(batch) * max(self.count(batch))
        self.now += (FIXED + PER_TOKEN * padded) * (10 if self.calls == 0 else 1)
        self.calls += 1


def test_two_batch_sizes_give_the_fixed_cost_and_the_cost_per_token():
    model = FakeModel()
    short, long = ["a b c"] * 32, ["w " * 100] * 32
    fixed, per_token = measure(model.run, model.count, [short, short, long], clock=model.clock)
    assert fixed == pytest.approx(FIXED) and per_token == pytest.approx(PER_TOKEN)


def test_the_batches_it_times_are_within_the_models_batch_size_and_input_limit():
    seen: list[list[str]] = []
    calibrate(seen.append, FakeModel.count, 6, max_tokens=64)
    assert len(seen) == 5 and {len(batch) for batch in seen} == {6}  # a warm-up, then two sizes twice
    assert max(max(FakeModel.count(batch)) for batch in seen) <= 64
    assert max(FakeModel.count(seen[-1])) > 4 * max(FakeModel.count(seen[1]))


def test_the_long_batch_is_as_long_as_the_model_reads_by_its_own_count():
    """A word of three tokens (the model's tokenizer decides, not the word count): the longest input
    timed is within the model's limit, and near it, so no counted token is one the model cuts
    (which would make the cost per token look smaller than it is)."""
    def count(batch: list) -> list[int]:
        return [3 * len(str(item).split()) + 2 for item in batch]

    for limit, pairs in ((256, False), (512, True), (64, False)):
        seen: list[list] = []
        calibrate(seen.append, count, 32, max_tokens=limit, pairs=pairs)
        longest = max(count(seen[-1]))
        assert 0.8 * limit <= longest <= limit, (limit, longest)


def _work(n: int, tokens: int, model: TimedModel, loop) -> Work:
    return Work(inputs("x", n, tokens), model.run, tenant=Tenant("k"), costs=[float(tokens)] * n, max_batch_size=32,
                bounds=Bounds(max_items=16384, max_seconds=10.0), deadline=loop.time() + TIMEOUT)


def _calibrated_scheduler(model: TimedModel) -> Scheduler:
    fake = FakeModel()
    short, long = ["a b c"] * 32, ["w " * 100] * 32
    speed = measure(fake.run, fake.count, [short, short, long], clock=fake.clock)
    return Scheduler("cold", clock=model.clock, speed=speed)


async def test_a_cold_calibrated_model_refuses_at_once_what_it_could_not_finish_before_the_deadline():
    model = TimedModel(FIXED, PER_TOKEN, gated=True)
    scheduler = _calibrated_scheduler(model)
    loop = asyncio.get_running_loop()
    with pytest.raises(TooLargeForDeadline) as info:  # 20 batches of 32 × 100 tokens: ~32 s
        await scheduler.submit(_work(640, 100, model, loop))
    assert info.value.status == 413 and info.value.code == "request_too_large_for_deadline"
    assert model.batches == [] and scheduler.queued_items == 0  # nothing ran for it
    fit = asyncio.create_task(scheduler.submit(_work(64, 100, model, loop)))  # ~3 s: admitted and answered
    await _settle()
    assert not fit.done()
    await _drain(model, [fit])
    assert len(await fit) == 64
    await scheduler.close()


async def test_an_untimed_cold_model_admits_the_same_request():
    model = TimedModel(FIXED, PER_TOKEN, gated=True)
    scheduler = Scheduler("cold", clock=model.clock)  # learned from traffic only: nothing ran yet
    loop = asyncio.get_running_loop()
    big = asyncio.create_task(scheduler.submit(_work(640, 100, model, loop)))
    await _settle()
    assert not big.done()  # admitted on a guess: it would run past its deadline
    big.cancel()
    model.release(10_000)
    await scheduler.close()
