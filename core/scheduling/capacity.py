"""A model's capacity: how long a batch takes, fitted from the batches it ran.

A batch takes ``fixed + per_token × padded`` seconds, ``padded`` being its size × its longest
input in tokens (what the model computes): a fixed cost per call (the forward pass's overhead, an
HTTP round trip) and a cost per token. The two are fitted by least squares over the last
``WINDOW`` batches, pulled towards a prior as ridge regression is (as much as ``PRIOR_WEIGHT``
batches), so before any batch ran the prior answers, and batches all of one size cannot swing
the fit: seeing only one-sentence batches it puts their time in the fixed cost and keeps the
prior's cost per token, rather than charging a full batch per token at the one-sentence rate (what
a drain rate learned from whatever ran last did: several times too slow). A batch far off the fit
of the others (a pause, a noisy neighbour) is left out, unless several in a row are (then the
model's speed changed); so is a model's first call (loading, allocating, compiling), and nothing
is refused for time until a few batches were fitted. Each batch costs a constant amount of work
(running sums over the window), whatever its length, and the fit itself is refitted from the sums
after every batch at first, then after every ``REFIT_EVERY``-th once the batches fitted since the
last refit took ``REFIT_S`` of the model's time (their seconds over its parallel calls) or were
``REFIT_MOST``, and at once when a batch is taken after a run of them was left out (the speed
changed): a model of tens of milliseconds a batch refits every fourth, as often as ever, and an
upstream answering thousands of calls a second not on every few requests.

A model timed when it loaded (``speed``, seconds per call and per padded token: an in-process
model runs a few batches of two sizes before it takes traffic, ``adapters.local.calibration``)
starts from what was measured instead of the prior, and counts as measured at once: a cold model
refuses a request it could not finish before its deadline rather than admitting it on a guess
and answering 504 at the deadline.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

PRIOR_FIXED = 0.005  # seconds per call
PRIOR_PER_TOKEN = 5e-5  # seconds per padded token: 20,000 tokens/s, a small model on a few cores
PRIOR_WEIGHT = 0.1  # a tenth of a batch's worth on the fixed cost: the first batch outweighs it
SLOPE_WEIGHT = 0.001  # and less on the cost per token: batches of two sizes soon outweigh it
REFERENCE_PADDED = 512.0  # a typical batch (32 inputs of 16 tokens): scales the prior on the slope
# How far off the prior may be (one standard deviation): a fixed cost is anyone's guess, a cost
# per token is rarely far from a model of this size's. Against the noise of the batch times (the
# spread about the fit) they say how much data it takes to move the estimate: batches all of
# nearly one size with noisy times (a busy machine) leave the cost per token near the prior
# rather than extrapolating a noisy slope over a few tokens to a full batch.
PRIOR_SPREAD_FIXED = 1.0
PRIOR_SPREAD_PER_TOKEN = PRIOR_PER_TOKEN
WINDOW = 128
WARM_UP = 1  # a model's first calls are left out: they load, allocate and compile as well
MEASURED_AFTER = 3  # batches fitted before the estimate refuses anything
LEFT_OUT_IN_A_ROW = 4  # batches far off the fit left out in a row; the next one is taken (the speed changed)
# The fit is refitted after every batch at first, then after every fourth: one batch of the 128
# moves it little. Every fourth once 10 ms of the model's time passed, or 64 batches: at thousands
# of calls a second the refit showed on every request.
REFIT_ALWAYS = 32
REFIT_EVERY = 4
REFIT_S = 0.01
REFIT_MOST = 64


@dataclass(frozen=True, slots=True)
class Load:
    """An amount of work in the model's terms: calls (batches, fractions of them for the inputs
    of one) and padded tokens."""

    calls: float = 0.0
    padded: float = 0.0

    def __add__(self, other: Load) -> Load:
        return Load(self.calls + other.calls, self.padded + other.padded)

    def __sub__(self, other: Load) -> Load:
        return Load(self.calls - other.calls, self.padded - other.padded)


NOTHING = Load()


class Capacity:
    """One model's fitted batch time; ``measured`` once ``MEASURED_AFTER`` batches ran after its
    first ``WARM_UP`` calls, or at once when its ``speed`` was measured as it loaded."""

    def __init__(self, max_in_flight: int = 1, fixed: float = PRIOR_FIXED, per_token: float = PRIOR_PER_TOKEN,
                 speed: tuple[float, float] | None = None) -> None:
        self.max_in_flight = max_in_flight
        if speed is not None:
            fixed, per_token = max(0.0, speed[0]), max(0.0, speed[1])
        self.prior = (fixed, per_token)
        self.fixed, self.per_token = fixed, per_token
        self.calibrated = speed is not None
        # The prior's spread on the cost per token: a measured one is that model's own scale.
        self._spread_per_token = max(PRIOR_SPREAD_PER_TOKEN, per_token) if speed is not None else PRIOR_SPREAD_PER_TOKEN
        self.batches = 0  # fitted in all
        self.measured = self.calibrated  # then once MEASURED_AFTER batches were fitted
        self._warming = 0 if speed is not None else WARM_UP  # a calibrated model has warmed up
        self._recent: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # n, Σx, Σx², Σt, Σxt, Σt² over _recent
        self._offs: deque[float] = deque(maxlen=WINDOW)  # how far off the fit each kept batch was
        self._typical_off = 0.0  # the median of _offs, refreshed now and then
        self._off_at = 0  # batches fitted when it was last refreshed
        self._left_out = 0  # batches left out in a row
        self._since_refit, self._refit_batches = 0.0, 0  # seconds fitted since the last refit; batches then

    def batch_seconds(self, padded: float) -> float:
        """The estimated time of one call of ``padded`` tokens."""
        return self.fixed + self.per_token * padded

    def seconds(self, load: Load) -> float:
        """The estimated time for the model to get through ``load``, its calls in parallel."""
        return max(0.0, self.fixed * load.calls + self.per_token * load.padded) / self.max_in_flight

    def tokens_per_second(self) -> float:
        """Padded tokens a second in typical batches (0 until a batch ran)."""
        return REFERENCE_PADDED * self.max_in_flight / self.batch_seconds(REFERENCE_PADDED) if self.measured else 0.0

    def observe(self, padded: float, seconds: float) -> None:
        """One batch of ``padded`` tokens took ``seconds``."""
        if self._warming:
            self._warming -= 1
            return
        x = padded if padded > 0.0 else 0.0
        t = seconds if seconds > 0.0 else 0.0
        expected = self.fixed + self.per_token * x
        if expected < 1e-9:
            expected = 1e-9
        off = abs(t - expected) / expected
        recent = self._recent
        # Off by how much of what it should have taken: a batch twice as slow as the fit (and far
        # more than the others are off) is an accident, not the model's speed, unless batches keep
        # coming that far off.
        if off > 1.0 and off > 6 * 1.4826 * self._typical_off and len(recent) >= 4 \
                and self._left_out < LEFT_OUT_IN_A_ROW:
            self._left_out += 1
            return
        changed = self._left_out >= LEFT_OUT_IN_A_ROW  # taken after a run left out: the speed changed
        self._left_out = 0
        n, sx, sxx, st, sxt, stt = self._sums  # over the window; the oldest batch leaves when it is full
        if len(recent) == WINDOW:
            ox, ot = recent[0]
            self._sums = (n, sx + x - ox, sxx + x * x - ox * ox, st + t - ot, sxt + x * t - ox * ot,
                          stt + t * t - ot * ot)
        else:
            self._sums = (n + 1.0, sx + x, sxx + x * x, st + t, sxt + x * t, stt + t * t)
        recent.append((x, t))
        self.batches += 1
        if not self.measured:
            self.measured = self.batches >= MEASURED_AFTER
        self._offs.append(off)
        if self.batches <= REFIT_ALWAYS or changed:
            self._refit()
        else:
            self._since_refit += t
            if not self.batches % REFIT_EVERY and (self._since_refit >= REFIT_S * self.max_in_flight
                                                   or self.batches - self._refit_batches >= REFIT_MOST):
                self._refit()

    def _refit(self) -> None:
        """Ridge least squares of t = fixed + per_token × x towards the prior, as much as the noise
        of the times against the prior's spread says (Bayesian linear regression), both kept ≥ 0:
        fitted once without noise, then again with the variance of the times about that first fit
        (a tenth of their mean, squared, while too few to tell)."""
        self._since_refit, self._refit_batches = 0.0, self.batches
        a0, b0 = self.prior
        n, sx, sxx, st, sxt, stt = self._sums
        noise = 0.0
        a = b = 0.0
        for refit in (False, True):
            la = max(PRIOR_WEIGHT, noise / PRIOR_SPREAD_FIXED ** 2)
            lb = max(SLOPE_WEIGHT * REFERENCE_PADDED ** 2, noise / self._spread_per_token ** 2)
            # Normal equations [[n + la, sx], [sx, sxx + lb]] · (a, b) = (st + la·a0, sxt + lb·b0)
            m11, m12, m22 = n + la, sx, sxx + lb
            r1, r2 = st + la * a0, sxt + lb * b0
            det = m11 * m22 - m12 * m12
            a = (r1 * m22 - m12 * r2) / det
            b = (m11 * r2 - m12 * r1) / det
            if b < 0:  # no model gets faster with more tokens: refit the fixed cost alone
                b = 0.0
                a = r1 / m11
            if a < 0:
                a = 0.0
                b = max(0.0, r2 / m22)
            if not refit:
                residual = stt - 2 * a * st - 2 * b * sxt + a * a * n + 2 * a * b * sx + b * b * sxx
                noise = (0.1 * st / n) ** 2 if n <= 2 else max(0.0, residual) / (n - 2)
        self.fixed, self.per_token = a, b
        if self.batches - self._off_at >= 16 or len(self._offs) < 16:  # refreshed now and then
            self._typical_off, self._off_at = statistics.median(self._offs), self.batches
