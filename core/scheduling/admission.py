"""Who gets in: a model's measured drain rate, and the rule that admits or refuses new work.

Work is refused at once, never queued to time out: over the tenant's ``max_queued`` items (429),
or over the model's bounds (``Bounds``: items, or seconds of work estimated from the drain rate)
or the request's deadline. Over the bounds a tenant still within its fair share is admitted (fair
queueing will serve it soon), and so is a newcomer while the queue ahead of it is within bounds;
a tenant over its share gets 429, a newcomer arriving at a full queue 503. Refusals carry a
Retry-After estimated from the drain rate. An idle model admits anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import RateLimited, ServiceUnavailable
from core.scheduling.work import Work

HARD_LIMIT = 2.0  # never more than twice a bound queued, whatever the shares
MAX_RETRY_AFTER = 60.0  # an estimate further out than this promises nothing


class DrainRate:
    """How fast a model gets through work, smoothed over recent batches (unknown until one ran)."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.cost: float | None = None  # cost units per second, one call at a time
        self.items: float | None = None

    def measured(self, cost: float, items: int, seconds: float) -> None:
        seconds = max(seconds, 1e-4)
        if self.cost is None or self.items is None:
            self.cost, self.items = cost / seconds, items / seconds
        else:
            self.cost = 0.7 * self.cost + 0.3 * cost / seconds
            self.items = 0.7 * self.items + 0.3 * items / seconds

    def seconds(self, cost: float) -> float:
        """Estimated seconds for the model to get through ``cost`` (0 while unknown)."""
        return cost / (self.cost * self.max_in_flight) if self.cost else 0.0

    def item_seconds(self, items: float) -> float:
        return items / (self.items * self.max_in_flight) if self.items else 0.0


@dataclass(frozen=True, slots=True)
class Arrival:
    """New work and what waits when it arrives: the queue's and its tenant's items and cost."""

    work: Work
    items: int
    cost: float
    queued_items: int
    queued_cost: float
    mine_items: int
    mine_cost: float
    flows: int  # tenants with work at the model, this one included
    now: float  # the event loop's clock


def admit(model: str, a: Arrival, rate: DrainRate, refused: Callable[[str], None]) -> None:
    """Return to admit ``a``; raise RateLimited or ServiceUnavailable (after ``refused(reason)``)."""
    tenant, bounds = a.work.tenant, a.work.bounds
    if a.mine_items and tenant.max_queued is not None and a.mine_items + a.items > tenant.max_queued:
        refused("key_bound")
        raise RateLimited(f"Key '{tenant.name}' has {a.mine_items} inputs queued for {model}; its bound is "
                          f"{tenant.max_queued}", retry_after=rate.seconds(a.mine_cost) or 1.0,
                          code="queue_full_for_key")
    if not a.queued_items:
        return  # an idle model takes anything

    def load(items: int, units: float) -> float:  # the fraction of the bounds that much work fills
        parts = [0.0]
        if bounds.max_items:
            parts.append(items / bounds.max_items)
        if bounds.max_seconds and rate.cost:
            parts.append(rate.seconds(units) / bounds.max_seconds)
        return max(parts)

    total = load(a.queued_items + a.items, a.queued_cost + a.cost)
    own = load(a.mine_items + a.items, a.mine_cost + a.cost)
    # Under fair queueing a tenant's work finishes about when its share of the model has done it.
    finish = rate.seconds(min(a.queued_cost + a.cost, (a.mine_cost + a.cost) * a.flows))
    late = a.work.deadline is not None and finish > a.work.deadline - a.now
    if total <= 1.0 and not late:
        return
    if not late and own <= 1.0 / a.flows and total <= HARD_LIMIT:
        return  # within its share: admitted over the bound, served in its turn
    if not late and not a.mine_items and load(a.queued_items, a.queued_cost) < 1.0:
        return  # a newcomer's big request while the queue is within bounds: its turns come fairly
    if a.mine_items:
        refused("key_share")
        raise RateLimited(f"{model} is busy and key '{tenant.name}' has more than its share queued",
                          retry_after=min(rate.seconds(a.mine_cost * a.flows) or 1.0, MAX_RETRY_AFTER),
                          code="queue_share_exceeded")
    refused("deadline" if late else "saturated")
    if load(a.items, a.cost) > 1.0 or late:
        wait = rate.seconds(a.queued_cost)  # it fits once the model is idle (an idle model takes anything)
    else:  # until there is room for it
        wait = rate.seconds(a.queued_cost + a.cost) - (bounds.max_seconds or 0.0)
        if bounds.max_items and rate.items:
            wait = max(wait, rate.item_seconds(a.queued_items + a.items - bounds.max_items))
    reason = "would not finish before its deadline" if late else "its queue is full"
    raise ServiceUnavailable(f"{model} is saturated: the request {reason}",
                             retry_after=min(max(wait, 0.1), MAX_RETRY_AFTER), code="model_saturated")
