"""One scheduler per model, and how a request's call becomes work for it.

``ModelQueues`` keeps a ``Scheduler`` per (adapter instance, model): routes that share a model
share its queue, whatever their alias. ``ModelQueues.queue(flow)`` binds one to a request:
its tenant (the key's name and its ``per_api_key`` policy; ``X-Priority`` for keys allowed to
set it), its route's bounds, its deadline. The request kind then calls ``embed`` or ``rerank``
on that queue instead of on the adapter.

How the work is cut follows the adapter's ``Batching``: an in-process model takes batches of
inputs, so a request is split into items and batched with everyone's; an HTTP upstream takes
each request whole (its concurrency bounded by ``max_in_flight``), unless the
``coalesce_embeddings`` flag merges small text requests into shared upstream calls. With the
``embedding_cache`` flag, inputs the cache holds never reach the queue (``core.cache``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from core.adapters import Batching, CallContext, EmbedResult, RerankResult
from core.cache import FLAG as CACHE
from core.errors import InvalidRequest, UpstreamRejected
from core.options import Option
from core.scheduling.scheduler import QueueObserver, Scheduler
from core.scheduling.work import ANONYMOUS, PRIORITIES, Bounds, Tenant, Work, estimate_tokens

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.cache import EmbeddingCache
    from core.config import ModelRoute, QueuePolicy
    from core.flow import Flow
    from core.metrics import GatewayMetrics
    from core.snapshot import Snapshot

R = TypeVar("R")
COALESCE = "coalesce_embeddings"
PRIORITY_HEADER = "X-Priority"

ROUTE_OPTIONS = (
    Option("queue_max_items", int, 16384, "inputs that may wait for the model before new requests get 503",
           minimum=1),
    Option("queue_max_seconds", float, 10.0, "estimated seconds of queued work before new requests get 503",
           minimum=0.001),
    Option("max_batch_tokens", int, None, "most padded tokens (size × longest input) in one batch of an "
           "in-process model (HTTP upstreams batch on their side)", minimum=1),
    Option("coalesce_max_request", int, 8, "largest request (inputs) that coalesce_embeddings merges", minimum=1),
    Option("coalesce_max_batch", int, 64, "most inputs in one merged upstream call", minimum=1),
    Option("coalesce_wait_ms", float, 2.0, "how long a merged call waits for more requests", minimum=0),
)


class _Refused(Exception):
    """A batch holding one request's inputs only was refused: the refusal is that request's."""

    def __init__(self, error: InvalidRequest | UpstreamRejected) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Entry:
    adapter: Adapter  # kept alive so its id stays unique while the entry exists
    scheduler: Scheduler
    batching: Batching


class ModelQueue:
    """One request's view of its model's scheduler."""

    def __init__(self, scheduler: Scheduler, adapter: Adapter, route: ModelRoute, tenant: Tenant,
                 token_counts: list[int] | None, merge: bool, cache: EmbeddingCache | None = None,
                 check: Callable[[np.ndarray], None] | None = None, batching: Batching | None = None) -> None:
        self.scheduler = scheduler
        self.batching = batching or adapter.batching(route)
        self.cache = cache
        self.check = check  # what the cache runs over fresh vectors before it stores them
        self.cache_hits: int | None = None  # set by a cached embed: how many inputs the cache served
        self.adapter = adapter
        self.route = route
        self.tenant = tenant
        self.token_counts = token_counts
        self.merge = merge

    @property
    def bounds(self) -> Bounds:
        opts = self.route.options
        return Bounds(max_items=opts.get("queue_max_items"), max_seconds=opts.get("queue_max_seconds"))

    def _costs(self, n: int, estimate: Sequence[float]) -> Sequence[float]:
        counts = self.token_counts
        return counts if counts is not None and len(counts) == n else estimate

    def _work(self, items: Sequence[Any], costs: Sequence[float], run: Any, context: CallContext, *,
              group: Hashable, split: bool, batch_size: int, wait_s: float) -> Work:
        return Work(items=items, run=run, tenant=self.tenant, costs=costs, group=group, split=split,
                    max_batch_size=batch_size, max_batch_tokens=self.route.options.get("max_batch_tokens"),
                    max_wait_s=wait_s, bounds=self.bounds, deadline=context.deadline)

    async def embed(self, inputs: Sequence[Any], context: CallContext) -> EmbedResult:
        if self.cache is None:
            return await self._embed(inputs, context, self.token_counts)
        counts = self.token_counts
        result, self.cache_hits = await self.cache.embed(
            self.route, inputs, context.is_tokens,
            lambda misses: self._embed(misses, context, None if len(misses) != len(inputs) else counts), counts,
            self.check)
        return result

    async def _embed(self, inputs: Sequence[Any], context: CallContext, counts: list[int] | None) -> EmbedResult:
        adapter, route = self.adapter, self.route
        batching = self.batching
        items = list(inputs)
        texts = bool(items) and isinstance(items[0], str)
        estimate = [estimate_tokens(t) for t in items] if texts else [float(len(ids)) for ids in items]
        costs = counts if counts is not None and len(counts) == len(items) else estimate
        opts = route.options
        merged = (not batching.split and self.merge and texts
                  and len(items) <= int(opts.get("coalesce_max_request", 8)))
        if batching.split or merged:
            shared = CallContext(is_tokens=context.is_tokens, tokenizer=context.tokenizer)  # serves many requests

            async def run(batch: list[Any], own: bool) -> np.ndarray:
                try:
                    return (await adapter.embed(route, batch, context if own else shared)).vectors
                except (InvalidRequest, UpstreamRejected) as exc:
                    if own:  # only this request's inputs: the refusal is its own
                        raise _Refused(exc) from exc
                    raise

            size = batching.max_batch_size if batching.split else int(opts.get("coalesce_max_batch", 64))
            wait = batching.max_wait_s if batching.split else float(opts.get("coalesce_wait_ms", 2.0)) / 1000
            work = self._work(items, costs, run, context, group=(id(route), context.is_tokens), split=True,
                              batch_size=size, wait_s=wait)
            try:
                rows = await self.scheduler.submit(work)
            except _Refused as exc:
                raise exc.error from None
            except (InvalidRequest, UpstreamRejected):
                if not merged:
                    raise
                # Maybe a neighbour's input was refused: ask again alone, with this request's context.
                return await adapter.embed(route, items, context)
            return EmbedResult(vectors=np.stack(rows))

        return await self._whole(lambda: adapter.embed(route, items, context), sum(costs), len(items), context)

    async def _whole(self, call: Callable[[], Awaitable[R]], cost: float, items: int, context: CallContext) -> R:
        """One request as one call: at once when nothing waits, else queued as one work item."""
        if self.scheduler.can_call_now():
            return await self.scheduler.call_now(call, cost, items)

        async def whole(batch: list[Any], own: bool) -> list[R]:
            return [await call()]

        [result] = await self.scheduler.submit(self._work([None], [cost], whole, context, group=None,
                                                          split=False, batch_size=1, wait_s=0.0))
        return result

    async def rerank(self, query: str, documents: Sequence[str], context: CallContext) -> RerankResult:
        adapter, route = self.adapter, self.route
        batching = self.batching
        docs = list(documents)
        head = estimate_tokens(query)
        costs = self._costs(len(docs), [head + estimate_tokens(d) for d in docs])
        if batching.split:  # a model scores pairs: this request's documents go in batches, with its query
            async def run(batch: list[str], own: bool) -> list[float]:
                return (await adapter.rerank(route, query, batch, context)).scores

            work = self._work(docs, costs, run, context, group=object(), split=True,
                              batch_size=batching.max_batch_size, wait_s=batching.max_wait_s)
            return RerankResult(scores=await self.scheduler.submit(work))

        return await self._whole(lambda: adapter.rerank(route, query, docs, context), sum(costs), len(docs),
                                 context)


class ModelQueues:
    """The schedulers of every model, and the tenants of the serving snapshot's keys."""

    def __init__(self, metrics: GatewayMetrics | None = None, cache: EmbeddingCache | None = None) -> None:
        self.metrics = metrics
        self.cache = cache
        self._entries: dict[tuple[int, Hashable], _Entry] = {}
        self._policies: Mapping[str, QueuePolicy] = {}
        self._policies_of: Snapshot | None = None
        self._plain: dict[str, Tenant] = {}  # tenants of this snapshot, by key name (and priority)
        self._adapters: set[int] = set()

    def queue(self, flow: Flow, check: Callable[[np.ndarray], None] | None = None) -> ModelQueue:
        route, adapter = flow.routed()
        cache = self.cache if flow.snapshot.flag(CACHE) and route.options.get("cache", True) else None
        entry = self._entry(route, adapter)
        return ModelQueue(entry.scheduler, adapter, route, self.tenant(flow), flow.token_counts,
                          merge=flow.snapshot.flag(COALESCE), cache=cache, check=check, batching=entry.batching)

    def scheduler(self, route: ModelRoute, adapter: Adapter) -> Scheduler:
        return self._entry(route, adapter).scheduler

    def _entry(self, route: ModelRoute, adapter: Adapter) -> _Entry:
        model = adapter.instance_key(route) or (route.kind, route.served_name)
        key = (id(adapter), model)
        entry = self._entries.get(key)
        if entry is None:
            self._prune()
            name = route.served_name
            observer: QueueObserver | None = self.metrics.queue_observer(name) if self.metrics else None
            batching = adapter.batching(route)
            scheduler = Scheduler(name, max_in_flight=batching.max_in_flight, observer=observer)
            entry = self._entries[key] = _Entry(adapter, scheduler, batching)
        return entry

    def tenant(self, flow: Flow) -> Tenant:
        caller = flow.caller
        if caller is None or caller.anonymous:
            return ANONYMOUS
        if flow.snapshot is not self._policies_of:  # resolved once per config snapshot
            files = flow.snapshot.files
            self._policies = files.rate_limits.resolve_policies(files.auth)
            self._policies_of = flow.snapshot
            self._plain.clear()
        policy = self._policies.get(caller.name)
        if policy is None:
            tenant = self._plain.get(caller.name)
            if tenant is None:
                tenant = self._plain[caller.name] = Tenant(name=caller.name)
            return tenant
        priority = PRIORITIES[policy.priority]
        asked = flow.headers.get(PRIORITY_HEADER) if policy.priority_header else None
        if asked is not None:
            if asked.strip().lower() not in PRIORITIES:
                raise InvalidRequest(f"{PRIORITY_HEADER} must be one of {', '.join(PRIORITIES)}",
                                     param=PRIORITY_HEADER, code="invalid_priority")
            priority = PRIORITIES[asked.strip().lower()]
        key = f"{caller.name}\0{priority}"
        tenant = self._plain.get(key)
        if tenant is None:
            tenant = self._plain[key] = Tenant(name=caller.name, weight=policy.weight, priority=priority,
                                               max_queued=policy.max_queued, priority_header=policy.priority_header)
        return tenant

    def config_changed(self, snapshot: Snapshot) -> None:
        """Drop the idle schedulers of adapters the new snapshot no longer has."""
        self._adapters = {id(a) for a in snapshot.adapters.values()}
        self._prune()

    def _prune(self) -> None:
        for key, entry in list(self._entries.items()):
            if key[0] not in self._adapters and entry.scheduler.idle:
                del self._entries[key]
                entry.scheduler.cancel_worker()

    async def close(self) -> None:
        for entry in self._entries.values():
            await entry.scheduler.close()
        self._entries.clear()
