"""Stages ``rate_limit`` and ``token_budget``: token buckets per caller.

rate_limits.yaml gives each caller a bucket: its ``per_api_key`` entry, else ``default``;
anonymous callers ``anonymous`` (else ``default``), one bucket per client address. A request
costs 1. A bucket may also set ``tokens_per_minute``: a second bucket charged with the
request's token count, checked by ``token_budget`` right after ``token_limit`` has counted (both after ``route``, so a
request refused there is charged no tokens). ``token_budget`` then charges the key's quota for the day and the
month (``plugins.rate_limit.quota``).

The store is Redis when ``ROUTER_REDIS_URL`` is set (replicas share budgets), else in-process.
If Redis cannot be reached the request gets 503 (fail closed), or passes unchecked with the
``rate_limit_fail_open`` flag; either way it is logged and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from core.chain import SETTLED
from core.errors import RateLimited, TokenLimitExceeded
from core.flow import Flow
from plugins.rate_limit.buckets import Decision, MemoryBucketStore, StoreUnavailable, unavailable
from plugins.rate_limit.limits import SECTION, BucketSpec
from plugins.rate_limit.quota import flows as quota

if TYPE_CHECKING:
    from core.metrics import GatewayMetrics
    from core.snapshot import Snapshot
    from plugins.rate_limit.buckets import BucketStore
    from plugins.rate_limit.quota.meter import QuotaMeter

log = logging.getLogger("maas.ratelimit")


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``"1s"``, ``"250ms"``, ``"6m0s"``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s"


_HEADER_NAMES = {unit: (f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}", f"x-ratelimit-reset-{unit}")
                 for unit in ("requests", "tokens")}


def rate_headers(decision: Decision, unit: str) -> dict[str, str]:
    limit, remaining, reset = _HEADER_NAMES[unit]
    return {limit: str(int(decision.limit)), remaining: str(max(0, math.floor(decision.remaining))),
            reset: duration(decision.reset_after)}


class RateLimiter:
    """The store and the limits of the serving snapshot, shared by both stages."""

    def __init__(self, store: BucketStore, metrics: GatewayMetrics | None) -> None:
        self.store = store
        self.local = store if isinstance(store, MemoryBucketStore) else None
        self.metrics = metrics
        self._snapshot: Snapshot | None = None
        self._per_key: dict[str, BucketSpec] = {}
        self._default: BucketSpec | None = None
        self._anonymous: BucketSpec | None = None

    def spec_for(self, flow: Flow) -> tuple[str, BucketSpec] | None:
        """(bucket id, limits) for the flow's caller; None when no bucket applies."""
        if flow.snapshot is not self._snapshot:  # resolved once per config snapshot
            limits = flow.snapshot.files.rate_limits
            self._per_key = limits.resolve(SECTION.name, flow.snapshot.files.auth)[0]
            top = limits.top(SECTION.name)
            self._default, self._anonymous = top.get("default"), top.get("anonymous")
            self._snapshot = flow.snapshot
        caller = flow.caller
        if caller is None:
            return None
        if caller.anonymous:
            spec = self._anonymous or self._default
            return (f"anon:{caller.client_ip}", spec) if spec else None
        spec = self._per_key.get(caller.name) or self._default
        return (f"key:{caller.name}", spec) if spec else None

    async def take(self, flow: Flow, key: str, capacity: float, rate: float, cost: float) -> Decision | None:
        """Ask the store; None means it could not answer and the flag lets the request through."""
        try:
            return await self.store.take(key, capacity, rate, cost)
        except StoreUnavailable:
            fail_open = flow.snapshot.flag("rate_limit_fail_open")
            if self.metrics is not None:
                self.metrics.rate_limit_store_errors.labels(
                    store=self.store.kind, outcome="admitted" if fail_open else "rejected").inc()
            if fail_open:
                return None
            raise unavailable() from None

    def limited(self, flow: Flow, reason: str) -> None:
        if self.metrics is not None:
            caller = flow.caller.name if flow.caller is not None else "unknown"
            self.metrics.rate_limited.labels(caller=caller, reason=reason).inc()


_ASK = object()  # ``_charge``: no decision yet, ask the store
BUCKET = "rate_limit.bucket"  # flow.meta: the caller's (bucket id, limits), or None when no bucket applies


class RateLimitStage:
    name = "rate_limit"

    def __init__(self, limiter: RateLimiter, meter: QuotaMeter | None = None) -> None:
        self.limiter = limiter
        self.meter = meter

    def __call__(self, flow: Flow) -> Awaitable[None]:
        if self.meter is not None:
            quota.wants_counts(self.meter, flow)
        found = flow.meta[BUCKET] = self.limiter.spec_for(flow)  # token_budget reuses it
        if found is None:
            return SETTLED
        bucket, spec = found
        if spec.tokens_per_minute is not None:
            flow.needs_token_counts = True  # the token_budget stage charges them
        return _charge(self.limiter, flow, "requests", "req:" + bucket, spec.capacity, spec.refill_rate, 1,
                       lambda: f"Rate limit reached: {int(spec.capacity)} requests, refilling at "
                               f"{spec.refill_rate:g} per second")


class TokenBudgetStage:
    """The tokens-per-minute bucket, then the key's quota (``plugins.rate_limit.quota``)."""

    name = "token_budget"

    def __init__(self, limiter: RateLimiter, meter: QuotaMeter | None = None) -> None:
        self.limiter = limiter
        self.meter = meter

    def __call__(self, flow: Flow) -> Awaitable[None]:
        # as the rate_limit stage found it; asked here only when that stage did not run
        found = flow.meta[BUCKET] if BUCKET in flow.meta else self.limiter.spec_for(flow)
        bucket, spec = found or ("", None)
        tokens = flow.prompt_tokens
        tpm = spec.tokens_per_minute if spec is not None else None
        if tpm is not None and tokens is not None:
            if tokens > tpm:  # could never fit: waiting would not help, so not a 429
                raise TokenLimitExceeded(f"The request has {tokens} tokens; this caller's budget is {tpm} "
                                         "tokens per minute", code="token_budget_exceeded")
            waiting = _charge(self.limiter, flow, "tokens", "tok:" + bucket, tpm, tpm / 60.0, tokens,
                              lambda: f"Token budget reached: {tpm} tokens per minute; this request needs {tokens}")
            if waiting is not None:  # a shared store answers later: the quota after it
                return self._then_quota(waiting, flow)
        charged = quota.charge(self.meter, flow) if self.meter is not None else None
        return charged if charged is not None else SETTLED

    async def _then_quota(self, waiting: Awaitable[None], flow: Flow) -> None:
        await waiting
        charged = quota.charge(self.meter, flow) if self.meter is not None else None
        if charged is not None:
            await charged


def _charge(limiter: RateLimiter, flow: Flow, kind: str, bucket: str, capacity: float, rate: float,
            cost: float, refusal: Callable[[], str], decision: object = _ASK) -> Awaitable[None]:
    """Take ``cost`` from a bucket; set the x-ratelimit-*-``kind`` headers; 429 when it is short
    (``refusal`` says why: written only then). The in-process store decides at once and cannot
    be unreachable (``SETTLED`` returned); a shared one answers later (the call to await returned),
    and its ``decision`` comes back here (None: it could not answer and the request passes)."""
    if decision is _ASK:
        local = limiter.local
        if local is None:
            return _charge_shared(limiter, flow, kind, bucket, capacity, rate, cost, refusal)
        decision = local.take_now(bucket, capacity, rate, cost)
    if decision is None:
        return SETTLED
    taken = cast(Decision, decision)  # (``_ASK`` was replaced above)
    flow.response_headers.update(rate_headers(taken, kind))
    if not taken.allowed:
        limiter.limited(flow, kind)
        raise RateLimited(f"{refusal()}; retry in {taken.retry_after:.2f} s", retry_after=taken.retry_after,
                          headers=dict(flow.response_headers))
    return SETTLED


async def _charge_shared(limiter: RateLimiter, flow: Flow, kind: str, bucket: str, capacity: float, rate: float,
                         cost: float, refusal: Callable[[], str]) -> None:
    _charge(limiter, flow, kind, bucket, capacity, rate, cost, refusal, await limiter.take(flow, bucket, capacity,
                                                                                          rate, cost))
