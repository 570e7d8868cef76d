"""What the scheduler is given: who asks (a tenant), for what (a job's items), within which bounds;
and what it reports (``QueueObserver``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

INTERACTIVE, BULK = 0, 1
PRIORITIES = {"interactive": INTERACTIVE, "bulk": BULK}
ANONYMOUS_NAME = "anonymous"


@dataclass(frozen=True, slots=True)
class Tenant:
    """One fair-queueing flow: an API key by name (anonymous callers are one tenant).

    ``weight`` is its share against other tenants of its priority; ``max_queued`` the items it
    may have waiting for one model (more is a 429); ``priority_header`` lets its requests pick
    their priority with ``X-Priority``.
    """

    name: str = ANONYMOUS_NAME
    weight: float = 1.0
    priority: int = INTERACTIVE
    max_queued: int | None = None
    priority_header: bool = False


ANONYMOUS = Tenant()


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much may wait for a model before new work is refused (None: no bound)."""

    max_items: int | None = None
    max_seconds: float | None = None  # estimated from the model's measured drain rate


NO_BOUNDS = Bounds()

# Runs one batch: the items, and whether they are all one job's (so its request id may go upstream).
Run = Callable[[list[Any], bool], Awaitable[Sequence[Any]]]


@dataclass(slots=True)
class Work:
    """One request's work for one model.

    ``split`` work is cut into batches of ``max_batch_size`` items (and ``max_batch_tokens``
    padded tokens: a batch costs its size × its longest item), its items sorted by cost so a
    batch holds similar lengths; batches may mix the items of every job with an equal
    ``group``, which share one ``run``. Work that is not split runs as one batch of its own.
    ``costs`` are the items' estimated tokens (1 each when absent); ``deadline`` is on the
    event loop's clock.
    """

    items: Sequence[Any]
    run: Run
    tenant: Tenant = ANONYMOUS
    costs: Sequence[float] | None = None
    group: Hashable = None
    split: bool = True
    max_batch_size: int = 32
    max_batch_tokens: int | None = None
    max_wait_s: float = 0.0
    bounds: Bounds = NO_BOUNDS
    deadline: float | None = None


def estimate_tokens(text: str) -> float:
    """A cheap token estimate for scheduling (about four characters a token, plus the specials);
    never for limits or usage, which count with the model's tokenizer."""
    return float(len(text) // 4 + 2)


class QueueObserver(Protocol):
    """What the scheduler reports (Prometheus in the router, nothing in the rerank service)."""

    def depth(self, items: int) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def batch(self, items: int) -> None: ...
    def refused(self, reason: str) -> None: ...
    def cancelled(self, items: int) -> None: ...
    def capacity(self, fixed: float, per_token: float, seconds: float, estimated: float | None) -> None:
        """A batch took ``seconds`` (``estimated`` before: None while the model had run none);
        the refitted fixed cost per call and cost per padded token."""
