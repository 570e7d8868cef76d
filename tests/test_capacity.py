"""The capacity model: a batch takes a fixed cost per call plus a cost per padded token, fitted
from the batches a model ran. Fed exact batch times (a fake model, no clock), the fit finds them."""

from __future__ import annotations

import pytest

from core.scheduling import Scheduler, Work
from core.scheduling.capacity import Capacity, Load
from tests.support.timed import TimedModel, inputs

FIXED, PER_TOKEN = 0.02, 0.0002  # about MiniLM on two cores: a full batch of 32 short inputs in ~0.1 s
SENTENCE, FULL = 12.0, 32 * 16.0  # padded tokens of a one-sentence batch and of a full one


def _true(padded: float) -> float:
    return FIXED + PER_TOKEN * padded


def test_before_any_batch_the_prior_answers_and_nothing_counts_as_measured():
    capacity = Capacity()
    assert not capacity.measured and capacity.batch_seconds(FULL) > 0
    assert capacity.tokens_per_second() == 0.0


def test_a_models_first_call_is_warm_up_and_a_few_batches_make_it_measured():
    capacity = Capacity()
    capacity.observe(FULL, 100 * _true(FULL))  # loading the model
    for _ in range(3):
        assert not capacity.measured
        capacity.observe(FULL, _true(FULL))
    assert capacity.measured and capacity.batch_seconds(FULL) == pytest.approx(_true(FULL), rel=0.02)


def test_after_warm_up_the_fit_is_the_models_batch_time():
    capacity = Capacity()
    for i in range(40):
        padded = [SENTENCE, FULL, 4 * 20.0, 32 * 40.0][i % 4]
        capacity.observe(padded, _true(padded))
    assert capacity.fixed == pytest.approx(FIXED, rel=0.02)
    assert capacity.per_token == pytest.approx(PER_TOKEN, rel=0.02)
    assert capacity.seconds(Load(calls=64, padded=64 * FULL)) == pytest.approx(64 * _true(FULL), rel=0.01)


@pytest.mark.parametrize("sentences_per_full_batch", [1, 10, 50])
def test_one_sentence_batches_mixed_with_full_ones_do_not_skew_it(sentences_per_full_batch):
    capacity = Capacity()
    for _ in range(8):
        for _ in range(sentences_per_full_batch):
            capacity.observe(SENTENCE, _true(SENTENCE))
        capacity.observe(FULL, _true(FULL))
    assert capacity.batch_seconds(FULL) == pytest.approx(_true(FULL), rel=0.02)
    assert capacity.batch_seconds(SENTENCE) == pytest.approx(_true(SENTENCE), rel=0.02)


def test_seeing_only_one_sentence_batches_a_full_batch_is_not_estimated_at_their_per_token_rate():
    capacity = Capacity()
    for _ in range(30):
        capacity.observe(SENTENCE, _true(SENTENCE))
    per_token_rate = FULL / SENTENCE * _true(SENTENCE)  # what a drain rate in tokens/s learned: ~7x too slow
    assert capacity.batch_seconds(SENTENCE) == pytest.approx(_true(SENTENCE), rel=0.02)
    assert capacity.batch_seconds(FULL) < 2 * _true(FULL) < per_token_rate / 3


def test_noisy_one_sentence_batches_of_a_few_lengths_do_not_extrapolate_to_a_steep_cost_per_token():
    capacity = Capacity()  # a busy machine: one-sentence calls take 50 ms to 900 ms, whatever their length
    lengths, times = [6.0, 7.0, 8.0, 10.0, 12.0], [0.4, 0.05, 0.9, 0.1, 0.3]
    for i in range(40):
        capacity.observe(lengths[i % 5], times[(i * 2) % 5])
    assert capacity.per_token <= 2 * Capacity().per_token  # near the prior: the data cannot tell
    assert 0.2 < capacity.fixed < 0.6  # their time is the fixed cost


def test_a_batch_far_off_the_others_is_left_out():
    capacity = Capacity()
    for i in range(40):
        padded = SENTENCE if i % 2 else FULL
        capacity.observe(padded, _true(padded) * (20 if i == 25 else 1))  # one pause of 20x
    assert capacity.batch_seconds(FULL) == pytest.approx(_true(FULL), rel=0.02)


def test_a_model_that_stays_slower_is_followed_not_left_out_for_ever():
    capacity = Capacity()
    for i in range(40):
        padded = SENTENCE if i % 2 else FULL
        capacity.observe(padded, _true(padded))
    for i in range(2 * 128):  # from now on three times as slow (a busier machine, a bigger model)
        padded = SENTENCE if i % 2 else FULL
        capacity.observe(padded, 3 * _true(padded))
    assert capacity.batch_seconds(FULL) == pytest.approx(3 * _true(FULL), rel=0.05)


async def test_the_scheduler_learns_the_batch_time_of_the_batches_it_runs():
    model = TimedModel(FIXED, PER_TOKEN)
    scheduler = Scheduler("m", clock=model.clock)
    for k in range(5):  # one-sentence requests, then a bulk one, then more sentences
        await scheduler.submit(Work(inputs(f"s{k}", 1, 12), model.run, costs=[12.0]))
    await scheduler.submit(Work(inputs("bulk", 256, 16), model.run, costs=[16.0] * 256, max_batch_size=32))
    for k in range(20):
        await scheduler.submit(Work(inputs(f"t{k}", 1, 12), model.run, costs=[12.0]))
    assert scheduler.capacity.batches == 5 + 8 + 20 - 1  # the first call is the model warming up
    assert scheduler.capacity.batch_seconds(FULL) == pytest.approx(_true(FULL), rel=0.02)
    await scheduler.close()


@pytest.mark.parametrize(("seconds", "in_flight", "every"), [(0.03, 1, 4), (0.0001, 1, 64), (0.003, 1, 4),
                                                              (0.003, 16, 56)])
def test_the_fit_is_refitted_every_fourth_batch_of_a_slow_model_and_rarely_for_a_fast_one(
        monkeypatch, seconds, in_flight, every):
    """After the first batches, every fourth once 10 ms of the model's time (its seconds over its
    parallel calls) passed, or 64 batches: the estimate follows a slow model as closely as ever and
    an upstream answering in a tenth of a millisecond does not pay for a refit every few requests."""
    capacity = Capacity(max_in_flight=in_flight)
    refits: list[int] = []
    refit = capacity._refit
    monkeypatch.setattr(capacity, "_refit", lambda: (refits.append(capacity.batches), refit()))
    for _ in range(400):
        capacity.observe(SENTENCE, seconds)
    assert refits[:32] == list(range(1, 33))
    gaps = {b - a for a, b in zip(refits[32:], refits[33:], strict=False)}
    assert gaps == {every}, gaps
    assert capacity.batch_seconds(SENTENCE) == pytest.approx(seconds, rel=0.1)
