"""Who gets in: the rule that admits or refuses new work, with the model's fitted capacity.

Work is refused at once, never queued to time out. In order:

1. over the tenant's ``max_queued`` inputs: 429 ``queue_full_for_key``;
2. a request that could not finish before its deadline even on the idle model (at the model's
   measured speed, with ``MARGIN`` to spare): 413 ``request_too_large_for_deadline``, never worth retrying as it is
   (``x-should-retry: false``); the message says how many inputs fit;
3. an idle model (nothing queued) admits the rest;
4. a request that would not finish before its deadline behind the queue, served fairly (under
   deficit round robin its tenant's share of the model does its work): 503 ``model_saturated``
   with a Retry-After of when it would fit;
5. the model's bounds (``Bounds``: items, or seconds of work): within them it is admitted; over
   them, a tenant whose queued work and this request are within its fair share (its weight's part
   of the bounds) is admitted however much others have queued or running, and so is any request
   while what waits ahead of it is within the bounds (the bound is on the wait, not on the
   request's own size); otherwise a tenant with work queued gets 429 ``queue_share_exceeded``, a
   newcomer 503 ``model_saturated``, with a Retry-After of when there is room.

Before the model ran a batch its speed is unknown, unless it was timed as it loaded (an
in-process model is: ``Capacity(speed=...)``): until then nothing is refused for time (2, 4,
seconds bounds), only for items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import RateLimited, ServiceUnavailable, TooLargeForDeadline
from core.scheduling.capacity import Capacity, Load
from core.scheduling.work import Work

MAX_RETRY_AFTER = 60.0  # an estimate further out than this promises nothing
# An estimate is good to about a fifth on a shared machine (the calibration, a fit of batches
# that ran beside other work): work must fit its deadline with that to spare. A request near the
# line is refused at once with how many inputs fit, not admitted to be cut off by a 504 after it
# used the model for its whole timeout.
MARGIN = 1.2


@dataclass(frozen=True, slots=True)
class Arrival:
    """New work and what waits when it arrives: the queue's and its tenant's items and load."""

    work: Work
    items: int
    load: Load  # its own, batched alone
    queued_items: int
    queued: Load
    mine_items: int
    mine: Load
    share: float  # its tenant's fair part of the model: its weight over all waiting tenants' weights
    now: float  # the event loop's clock


def admit(model: str, a: Arrival, capacity: Capacity, refused: Callable[[str], None]) -> None:
    """Return to admit ``a``; raise RateLimited, TooLargeForDeadline or ServiceUnavailable (after
    ``refused(reason)``)."""
    tenant, bounds, work = a.work.tenant, a.work.bounds, a.work
    if a.mine_items and tenant.max_queued is not None and a.mine_items + a.items > tenant.max_queued:
        refused("key_bound")
        raise RateLimited(f"Key '{tenant.name}' has {a.mine_items} inputs queued for {model}; its bound is "
                          f"{tenant.max_queued}", retry_after=capacity.seconds(a.mine) or 1.0,
                          code="queue_full_for_key")
    timed = capacity.measured
    left = work.deadline - a.now if work.deadline is not None else None
    alone = alone_seconds(work, a.load, capacity) if timed else 0.0
    if timed and left is not None and 0 < left < alone * MARGIN:  # (a deadline already past is its timeout's)
        refused("too_large")
        raise too_large(model, a.items, alone, left, _finish(a, capacity, alone) - alone if a.queued_items else 0.0)
    if not a.queued_items:
        return  # an idle model takes anything it can finish

    def load(items: int, work_load: Load) -> float:  # the fraction of the bounds that much work fills
        parts = [0.0]
        if bounds.max_items:
            parts.append(items / bounds.max_items)
        if bounds.max_seconds and timed:
            parts.append(capacity.seconds(work_load) / bounds.max_seconds)
        return max(parts)

    finish = _finish(a, capacity, alone)
    if left is not None and 0 < left < finish * MARGIN:
        refused("deadline")
        raise ServiceUnavailable(f"{model} is busy: the request would not finish before its deadline "
                                 f"({finish:.1f} s of work ahead of it and its own, {left:.1f} s to go)",
                                 retry_after=_retry(finish - left), code="model_saturated")
    total = load(a.queued_items + a.items, a.queued + a.load)
    own = load(a.mine_items + a.items, a.mine + a.load)
    ahead = load(a.queued_items, a.queued)
    if total <= 1.0 or own <= a.share or ahead < 1.0:
        return  # within bounds; within its share (served in its turn); or the wait ahead is
    if a.mine_items:
        refused("key_share")
        raise RateLimited(f"{model} is busy and key '{tenant.name}' has more than its share queued",
                          retry_after=_retry(capacity.seconds(a.mine) / max(a.share, 1e-9)),
                          code="queue_share_exceeded")
    refused("saturated")
    # Until what waits ahead is back within the bounds (a request within them then gets in).
    wait = capacity.seconds(a.queued) * min(1.0, (ahead - 1.0) / ahead + 0.01) if ahead else 0.0
    raise ServiceUnavailable(f"{model} is saturated: its queue is full", retry_after=_retry(wait),
                             code="model_saturated")


def alone_seconds(work: Work, load: Load, capacity: Capacity) -> float:
    """How long ``work`` of ``load`` takes on the idle model: its batches, or its one call."""
    return capacity.seconds(load) if work.split else capacity.batch_seconds(load.padded)


def _finish(a: Arrival, capacity: Capacity, alone: float) -> float:
    """When the request would be done: its tenant's share of the model does its queued work and
    this request's, unless the whole queue is done sooner."""
    if not capacity.measured:
        return 0.0
    everything = capacity.seconds(a.queued + a.load)
    mine = capacity.seconds(a.mine + a.load) / max(a.share, 1e-9)
    return max(alone, min(everything, mine))


def _retry(seconds: float) -> float:
    return min(max(seconds, 0.1), MAX_RETRY_AFTER)


def too_large(model: str, items: int, alone: float, left: float, wait: float) -> TooLargeForDeadline:
    """The 413 for ``items`` inputs taking ``alone`` seconds on the idle model, ``left`` seconds
    before their deadline, behind ``wait`` seconds of others' work (served fairly)."""
    per_input = max(alone * MARGIN / items, 1e-9)  # what fits with the estimate's margin to spare
    fit_idle = int(max(left, 0.0) / per_input)
    fit_now = max(0, int((left - max(wait, 0.0) * MARGIN) / per_input))
    return TooLargeForDeadline(
        f"{items} inputs would take about {alone:.1f} s on {model} even with nothing else to do, past the "
        f"request's deadline ({left:.1f} s): about {fit_now} inputs fit now ({fit_idle} on the idle model). "
        "Send fewer inputs per request, or send bulk work through the Batch API.")
