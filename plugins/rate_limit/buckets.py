"""Token-bucket arithmetic, the store interface, and the in-process store.

A bucket holds up to ``capacity`` tokens and gains ``rate`` tokens per second; a request costs
``cost`` tokens (1 per request, or its token count for a tokens-per-minute budget) and is
admitted only if that many are there. A bucket never seen is full.

Only the level and its timestamp are kept, never the limits: a reload that changes a caller's
limits keeps what the caller has used (clamped to the new capacity), so no reload hands out a
fresh burst, and replicas that briefly disagree on the limits cannot reset each other's buckets.
The Redis store runs the same arithmetic in Lua (``redis_store.py``); a test holds the two equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from core.errors import ServiceUnavailable

NEVER = 86400.0  # what "retry after" says for a bucket that does not refill


class StoreUnavailable(Exception):
    """The bucket store cannot decide (Redis unreachable); the stage fails open or closed."""


def unavailable() -> ServiceUnavailable:
    """What a caller gets when limits cannot be checked and the request fails closed."""
    return ServiceUnavailable("Rate limiting is unavailable; retry shortly", retry_after=1.0,
                              code="rate_limit_unavailable")


# The values of the bucket arithmetic are named tuples: immutable like a frozen dataclass, and made
# in a third of its time (several are made on every request).
class BucketState(NamedTuple):
    tokens: float
    updated: float


class Decision(NamedTuple):
    allowed: bool
    limit: float
    remaining: float  # tokens left after this decision
    retry_after: float  # seconds until ``cost`` tokens are there (0 when allowed)
    reset_after: float  # seconds until the bucket is full again

    @classmethod
    def of(cls, allowed: bool, tokens: float, capacity: float, rate: float, cost: float) -> Decision:
        if allowed:
            retry = 0.0
        else:
            retry = (cost - tokens) / rate if rate > 0 else NEVER
        if tokens >= capacity:
            reset = 0.0
        else:
            reset = (capacity - tokens) / rate if rate > 0 else NEVER
        return cls(allowed, capacity, tokens, min(retry, NEVER), min(reset, NEVER))


def refill(state: BucketState | None, capacity: float, rate: float, now: float) -> BucketState:
    """The bucket at ``now``: full if never seen; time never runs backwards."""
    if state is None:
        return BucketState(capacity, now)
    if now <= state.updated:
        return BucketState(min(capacity, state.tokens), state.updated)
    return BucketState(min(capacity, state.tokens + (now - state.updated) * rate), now)


def decide(state: BucketState | None, capacity: float, rate: float, cost: float,
           now: float) -> tuple[BucketState, bool]:
    """Take ``cost`` tokens if they are there. Returns the new state and whether it was admitted.

    Mirrored operation for operation by the Lua script, so both stores agree to the last bit.
    """
    current = refill(state, capacity, rate, now)
    if current.tokens >= cost:
        return BucketState(current.tokens - cost, current.updated), True
    return current, False


class BucketStore(Protocol):
    kind: str

    async def take(self, key: str, capacity: float, rate: float, cost: float,
                   now: float | None = None) -> Decision:
        """Decide one request atomically. ``now`` is for tests; stores use their own clock.

        Raises StoreUnavailable when the store cannot be reached.
        """

    async def close(self) -> None: ...


class MemoryBucketStore:
    """Buckets in this process only: each router replica has its own budget."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[BucketState, float, float]] = {}  # state, capacity, rate
        self._max = max_buckets

    async def take(self, key: str, capacity: float, rate: float, cost: float,
                   now: float | None = None) -> Decision:
        return self.take_now(key, capacity, rate, cost, now)

    def take_now(self, key: str, capacity: float, rate: float, cost: float, now: float | None = None) -> Decision:
        """``take`` without a coroutine: the stages call it directly on this store."""
        now = self._clock() if now is None else now
        entry = self._buckets.get(key)
        state, allowed = decide(entry[0] if entry else None, capacity, rate, cost, now)
        self._buckets[key] = (state, capacity, rate)
        if len(self._buckets) > self._max:
            self._prune(now)
        return Decision.of(allowed, state.tokens, capacity, rate, cost)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled: a full bucket is the same as none.

        Anonymous callers get a bucket per address, so without this the dict would only grow.
        """
        full = [k for k, (s, cap, rate) in self._buckets.items() if refill(s, cap, rate, now).tokens >= cap]
        for key in full:
            del self._buckets[key]
        keep = self._max * 3 // 4  # leave room, so pruning (O(n)) happens once per many takes
        if len(self._buckets) > keep:  # a flood of distinct addresses: the least recent go
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k][0].updated)
            for key in oldest[: len(self._buckets) - keep]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)

    async def close(self) -> None:
        self._buckets.clear()
