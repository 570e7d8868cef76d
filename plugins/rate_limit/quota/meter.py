"""``QuotaMeter``: charges a key's quota, refunds what was not served, records the usage of keys
without one, and reads a key's figures for ``GET /v1/usage``.

A key with a quota is charged before the call (``charge``: one atomic store call, refused with
``QuotaExceeded`` when a limit would be passed). What was charged for a request that got no answer
is given back (``settle``), so the counts equal what usage bills (``maas_usage_*``: answered
requests only). Keys without a quota are counted after their answer (``record``): a dict entry
per key and UTC day, folded into the store's counters in one round trip for all of them (every
``flush_s``, and before anything reads them), off the request's path.

Outside an HTTP request (a bulk job's lines): ``ticket = await meter.charge(snapshot, name, tokens)``
before the work, ``meter.settle(ticket, tokens_or_None)`` after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import QuotaExceeded
from plugins.rate_limit.buckets import StoreUnavailable, unavailable
from plugins.rate_limit.quota.limits import SECTION, QuotaSpec
from plugins.rate_limit.quota.periods import Calendar, Period, iso, utc
from plugins.rate_limit.quota.store import Charge, Counter, MemoryQuotaStore, QuotaStore, Used

if TYPE_CHECKING:
    from core.metrics import GatewayMetrics
    from core.snapshot import Snapshot

log = logging.getLogger("maas.quota")
MAX_PENDING = 100_000  # counters waiting for the store while it is down; past this, the oldest go


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one charge took, so that it can be given back or corrected."""

    name: str
    periods: tuple[Period, ...]
    tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    period: Period
    used: Used
    spec: QuotaSpec | None


class QuotaMeter:
    def __init__(self, store: QuotaStore, metrics: GatewayMetrics | None = None, *,
                 clock: Callable[[], float] = time.time, flush_s: float | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self._clock = clock
        self.flush_s = 0.5 if flush_s is None else flush_s  # a shared store's writes, batched
        self._snapshot: Snapshot | None = None
        self._specs: dict[str, QuotaSpec] = {}
        self._pending: dict[Counter, Used] = {}
        self._recorded: dict[tuple[str, int], tuple[int, int]] = {}  # (key name, UTC day number) → tokens, requests
        self._flusher: asyncio.Task[None] | None = None
        self._calendar = Calendar()

    def spec(self, snapshot: Snapshot, name: str) -> QuotaSpec | None:
        """The quota of key ``name`` in ``snapshot`` (resolved once per snapshot)."""
        if snapshot is not self._snapshot:
            self._specs = snapshot.files.rate_limits.resolve(SECTION.name, snapshot.files.auth)[0]
            self._snapshot = snapshot
        return self._specs.get(name)

    async def charge(self, snapshot: Snapshot, name: str, tokens: int, requests: int = 1) -> Ticket | None:
        """Charge key ``name`` for ``tokens`` and ``requests`` now. None when it has no quota or when
        the store is down and the key fails open: then ``record`` its usage afterwards.

        Raises ``QuotaExceeded`` (429) past a limit, ``ServiceUnavailable`` (503) when the store is
        down and the key fails closed."""
        spec = self.spec(snapshot, name)
        if spec is None:
            return None
        if self._recorded:
            self._fold()  # usage recorded before the key had its quota (a reload) counts too
        periods = self._calendar.at(self._clock())
        limits = [(spec.limit("tokens", p.name), spec.limit("requests", p.name)) for p in periods]
        try:
            charge = await self.store.charge(name, periods, limits, tokens, requests)
        except StoreUnavailable:
            fail_open = spec.fail_open if spec.fail_open is not None else snapshot.flag("rate_limit_fail_open")
            if self.metrics is not None:
                self.metrics.rate_limit_store_errors.labels(
                    store=self.store.kind, outcome="admitted" if fail_open else "rejected").inc()
            if not fail_open:
                raise unavailable() from None
            return None  # unchecked; its usage is recorded after the answer, written once the store is back
        if not charge.allowed:
            if self.metrics is not None:
                self.metrics.rate_limited.labels(caller=name, reason="quota").inc()
            raise self._refusal(name, spec, periods, charge, tokens, requests)
        return Ticket(name, periods, tokens, requests)

    def _refusal(self, name: str, spec: QuotaSpec, periods: tuple[Period, ...], charge: Charge, tokens: int,
                 requests: int) -> QuotaExceeded:
        spent = []
        for i in charge.over:
            period, used = periods[i], charge.used[i]
            for what, have, cost in (("tokens", used.tokens, tokens), ("requests", used.requests, requests)):
                limit = spec.limit(what, period.name)
                if limit is not None and have + cost > limit:
                    spent.append(f"{limit} {what} per {period.name} (used {have}, this request needs {cost})")
        reset = max((periods[i] for i in charge.over), key=lambda p: p.end)  # both spent: the later reset
        return QuotaExceeded(f"Quota exceeded for key '{name}': {'; '.join(spent)}; it resets at "
                             f"{iso(reset.end)}", retry_after=reset.seconds_left(utc(self._clock())))

    def settle(self, ticket: Ticket, tokens: int | None) -> None:
        """After the request: ``tokens`` it was billed (None: no answer, the charge is given back)."""
        if tokens is None:
            self._add(ticket.name, ticket.periods, -ticket.tokens, -ticket.requests)
        elif tokens != ticket.tokens:  # the answer's usage is what is billed
            self._add(ticket.name, ticket.periods, tokens - ticket.tokens, 0)

    def record(self, name: str, tokens: int, requests: int = 1) -> None:
        """Count usage of a key without a quota (in the store within ``flush_s``). Every answered
        request of every key comes here: it only adds to a dict entry of the key's UTC day."""
        day = (name, int(self._clock() // 86400))
        held = self._recorded.get(day)
        self._recorded[day] = (tokens, requests) if held is None else (held[0] + tokens, held[1] + requests)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon(), name="quota-flush")

    def _fold(self) -> None:
        """What ``record`` counted, added to the counters of its day and month."""
        recorded, self._recorded = self._recorded, {}
        for (name, day), (tokens, requests) in recorded.items():
            self._add(name, self._calendar.at(day * 86400.0), tokens, requests)

    def _add(self, name: str, periods: tuple[Period, ...], tokens: int, requests: int) -> None:
        if isinstance(self.store, MemoryQuotaStore):  # in process: at once, no buffer, no task
            self.store.add_now({(name, period): Used(tokens, requests) for period in periods})
            return
        for period in periods:
            held = self._pending.get((name, period), Used())
            self._pending[(name, period)] = Used(held.tokens + tokens, held.requests + requests)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon(), name="quota-flush")

    async def _flush_soon(self) -> None:
        while self._pending or self._recorded:
            await asyncio.sleep(self.flush_s)
            if not await self.flush():
                await asyncio.sleep(1.0)  # the store is down: try again later, not in a tight loop

    async def flush(self) -> bool:
        """Write what is pending in one store call; False (kept for later) when the store is down."""
        if self._recorded:
            self._fold()
        if not self._pending:
            return True
        pending, self._pending = self._pending, {}
        try:
            await self.store.add(pending)
            return True
        except (StoreUnavailable, asyncio.CancelledError) as exc:
            for counter, delta in pending.items():  # merged back, the newest on top
                held = self._pending.get(counter, Used())
                self._pending[counter] = Used(held.tokens + delta.tokens, held.requests + delta.requests)
            self._pending = dict(sorted(self._pending.items(), key=lambda kv: kv[0][1].end))
            while len(self._pending) > MAX_PENDING:
                counter = next(iter(self._pending))
                log.error("quota store down too long: usage of an old period dropped",
                          extra={"caller": counter[0], "period": counter[1].id})
                del self._pending[counter]
            if isinstance(exc, asyncio.CancelledError):  # stopping: close() writes what is pending
                raise
            return False

    async def usage(self, snapshot: Snapshot, name: str) -> list[PeriodUsage]:
        """Key ``name``'s counts for the current day and month, with what is not yet written.

        Raises ``ServiceUnavailable`` when the store is down."""
        if self._recorded:
            self._fold()
        periods = self._calendar.at(self._clock())
        try:
            found = await self.store.read(name, periods)
        except StoreUnavailable:
            raise unavailable() from None
        spec = self.spec(snapshot, name)
        out = []
        for period, used in zip(periods, found, strict=True):
            extra = self._pending.get((name, period), Used())
            out.append(PeriodUsage(period, Used(used.tokens + extra.tokens, used.requests + extra.requests), spec))
        return out

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if not await self.flush():
            log.error("quota store unreachable at shutdown: usage not yet written is lost",
                      extra={"counters": len(self._pending)})
        await self.store.close()
