"""Quota counters: per key name and period, tokens and requests used.

``charge`` is the one atomic step: it adds a request's cost to every period's counter only if
no limit would be passed, so replicas racing on a key's last tokens cannot both have them.
``add`` adds unconditionally (usage of keys without a quota; negative to refund a charge).
The in-process store serves one replica; the Redis store (``redis_store``) is shared by all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from plugins.rate_limit.quota.periods import Period

Limits = tuple[int | None, int | None]  # (tokens, requests) over one period; None: no limit
Counter = tuple[str, Period]  # (key name, period)


@dataclass(frozen=True, slots=True)
class Used:
    tokens: int = 0
    requests: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    allowed: bool
    used: tuple[Used, ...]  # per period: after the charge, or as found when refused
    over: tuple[int, ...] = ()  # the periods (indexes) whose limit refused it


def passes(used: Used, limits: Limits, tokens: int, requests: int) -> bool:
    token_limit, request_limit = limits
    return ((token_limit is None or used.tokens + tokens <= token_limit)
            and (request_limit is None or used.requests + requests <= request_limit))


class QuotaStore(Protocol):
    kind: str

    async def charge(self, name: str, periods: Sequence[Period], limits: Sequence[Limits], tokens: int,
                     requests: int) -> Charge:
        """Add the cost to each period's counter if no limit would be passed, atomically.

        Raises ``StoreUnavailable`` when the store cannot be reached."""

    async def add(self, deltas: Mapping[Counter, Used]) -> None:
        """Add to counters unconditionally (negative to refund)."""

    async def read(self, name: str, periods: Sequence[Period]) -> list[Used]: ...

    async def close(self) -> None: ...


class MemoryQuotaStore:
    """Counters in this process: exact for one replica only (each replica would count its own)."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._counters: dict[tuple[str, str], Used] = {}
        self._ends: dict[tuple[str, str], float] = {}
        self._clock = clock
        self._next_prune = 0.0

    def _get(self, name: str, period: Period) -> Used:
        return self._counters.get((name, period.id), Used())

    def _put(self, name: str, period: Period, used: Used) -> None:
        counter = (name, period.id)
        if counter not in self._counters:
            self._ends[counter] = period.end.timestamp()
        self._counters[counter] = used

    async def charge(self, name: str, periods: Sequence[Period], limits: Sequence[Limits], tokens: int,
                     requests: int) -> Charge:
        self._prune()
        found = [self._get(name, p) for p in periods]
        over = tuple(i for i, (u, lim) in enumerate(zip(found, limits, strict=True))
                     if not passes(u, lim, tokens, requests))
        if over:
            return Charge(False, tuple(found), over)
        after = tuple(Used(u.tokens + tokens, u.requests + requests) for u in found)
        for period, used in zip(periods, after, strict=True):
            self._put(name, period, used)
        return Charge(True, after)

    async def add(self, deltas: Mapping[Counter, Used]) -> None:
        self.add_now(deltas)

    def add_now(self, deltas: Mapping[Counter, Used]) -> None:
        """``add`` without a coroutine: nothing here waits, so a meter need not buffer for it."""
        self._prune()
        for (name, period), delta in deltas.items():
            used = self._get(name, period)
            self._put(name, period, Used(used.tokens + delta.tokens, used.requests + delta.requests))

    async def read(self, name: str, periods: Sequence[Period]) -> list[Used]:
        return [self._get(name, p) for p in periods]

    def _prune(self) -> None:
        """Forget the counters of periods that have ended (at most once a minute)."""
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + 60
        for counter in [c for c, end in self._ends.items() if end <= now]:
            del self._ends[counter]
            self._counters.pop(counter, None)

    async def close(self) -> None:
        self._counters.clear()
        self._ends.clear()

