"""How a served model's calls become work for its scheduler, and the schedulers of every model.

``Schedulers`` keeps one ``Scheduler`` per (adapter instance, model): routes that share a model
share its queue, whatever their alias, and a queue outlives config reloads. ``ModelFeed`` is one
served model's way into its scheduler, built once per snapshot with the route's queue options
read and typed: each call brings its tenant, deadline and token counts.

How the work is cut follows the adapter's ``Batching``: an in-process model takes batches of
inputs, so a request is split into items and batched with everyone's; an HTTP upstream takes
each request whole (its concurrency bounded by ``max_in_flight``), unless the
``coalesce_embeddings`` flag merges small text requests into shared upstream calls.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from core.adapters import Batching, CallContext, EmbedResult, RerankResult
from core.errors import InvalidRequest, UpstreamRejected
from core.options import Option
from core.scheduling.scheduler import Scheduler
from core.scheduling.work import ANONYMOUS, Bounds, QueueObserver, Tenant, Work, estimate_tokens

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute

R = TypeVar("R")
COALESCE = "coalesce_embeddings"

ROUTE_OPTIONS = (
    Option("queue_max_items", int, 16384, "inputs that may wait for the model before new requests get 503",
           minimum=1, shapes_output=False),
    Option("queue_max_seconds", float, 10.0, "estimated seconds of queued work before new requests get 503",
           minimum=0.001, shapes_output=False),
    Option("max_batch_tokens", int, None, "most padded tokens (size × longest input) in one batch of an "
           "in-process model (HTTP upstreams batch on their side)", minimum=1, shapes_output=False),
    Option("coalesce_max_request", int, 8, "largest request (inputs) that coalesce_embeddings merges", minimum=1,
           shapes_output=False),
    Option("coalesce_max_batch", int, 64, "most inputs in one merged upstream call", minimum=1, shapes_output=False),
    Option("coalesce_wait_ms", float, 2.0, "how long a merged call waits for more requests", minimum=0,
           shapes_output=False),
)


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """The route's queue options, typed (their defaults are the declarations' above)."""

    bounds: Bounds
    max_batch_tokens: int | None
    coalesce_max_request: int
    coalesce_max_batch: int
    coalesce_wait_s: float

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> QueueOptions:
        declared = {o.name: o.default for o in ROUTE_OPTIONS}

        def read(name: str) -> Any:
            value = options.get(name)
            return declared[name] if value is None else value

        return cls(bounds=Bounds(max_items=read("queue_max_items"), max_seconds=read("queue_max_seconds")),
                   max_batch_tokens=read("max_batch_tokens"), coalesce_max_request=int(read("coalesce_max_request")),
                   coalesce_max_batch=int(read("coalesce_max_batch")),
                   coalesce_wait_s=float(read("coalesce_wait_ms")) / 1000)


class _Refused(Exception):
    """A batch holding one request's inputs only was refused: the refusal is that request's."""

    def __init__(self, error: InvalidRequest | UpstreamRejected) -> None:
        super().__init__(str(error))
        self.error = error


class ModelFeed:
    """One served model's calls, cut into work for its scheduler as its adapter is fed. The
    scheduler is found (or made) on the first call, so a route nobody calls costs no queue."""

    def __init__(self, schedulers: Schedulers, adapter: Adapter, route: ModelRoute, merge: bool) -> None:
        self._schedulers = schedulers
        self._entry: _Entry | None = None
        self.adapter = adapter
        self.route = route
        self.merge = merge
        self.options = QueueOptions.of(route.options)
        self.model_key = model_key(route)

    def _resolve(self) -> _Entry:
        entry = self._entry = self._schedulers.entry(self.route, self.adapter)
        return entry

    @property
    def scheduler(self) -> Scheduler:
        return (self._entry or self._resolve()).scheduler

    @property
    def batching(self) -> Batching:
        return (self._entry or self._resolve()).batching

    def _work(self, items: Sequence[Any], costs: Sequence[float], run: Any, tenant: Tenant, deadline: float | None,
              *, group: Hashable, split: bool, batch_size: int, wait_s: float) -> Work:
        return Work(items=items, run=run, tenant=tenant, costs=costs, group=group, split=split,
                    max_batch_size=batch_size, max_batch_tokens=self.options.max_batch_tokens,
                    max_wait_s=wait_s, bounds=self.options.bounds, deadline=deadline)

    def refuse_unfit(self, at_least: Sequence[float], deadline: float) -> None:
        """Refuse (413) at once a request of inputs of ``at_least`` tokens each (a lower bound,
        found without tokenizing) that the idle model could not finish before ``deadline``."""
        entry = self._entry or self._resolve()
        batching = entry.batching
        work = self._work([None] * len(at_least), at_least, _never_run, ANONYMOUS, deadline, group=None,
                          split=batching.split, batch_size=batching.max_batch_size, wait_s=0.0)
        entry.scheduler.refuse_unfit(work)

    async def embed(self, inputs: Sequence[Any], context: CallContext, tenant: Tenant,
                    counts: Sequence[int] | None) -> EmbedResult:
        entry = self._entry or self._resolve()
        adapter, route, opts = self.adapter, self.route, self.options
        batching, scheduler = entry.batching, entry.scheduler
        items = list(inputs)
        texts = bool(items) and isinstance(items[0], str)
        if counts is not None and len(counts) == len(items):
            costs: Sequence[float] = counts
        else:
            costs = [estimate_tokens(t) for t in items] if texts else [float(len(ids)) for ids in items]
        merged = not batching.split and self.merge and texts and len(items) <= opts.coalesce_max_request
        if batching.split or merged:
            shared = CallContext(is_tokens=context.is_tokens, tokenizer=context.tokenizer,  # serves many requests
                                 variant=context.variant)

            async def run(batch: list[Any], own: bool) -> np.ndarray:
                try:
                    return (await adapter.embed(route, batch, context if own else shared)).vectors
                except (InvalidRequest, UpstreamRejected) as exc:
                    if own:  # only this request's inputs: the refusal is its own
                        raise _Refused(exc) from exc
                    raise

            size = batching.max_batch_size if batching.split else opts.coalesce_max_batch
            wait = batching.max_wait_s if batching.split else opts.coalesce_wait_s
            # one batch: one model (aliases of it share batches), one kind of input, one variant
            work = self._work(items, costs, run, tenant, context.deadline,
                              group=(self.model_key, context.is_tokens, context.variant),
                              split=True, batch_size=size, wait_s=wait)
            try:
                rows = await scheduler.submit(work)
            except _Refused as exc:
                raise exc.error from None
            except (InvalidRequest, UpstreamRejected):
                if not merged:
                    raise
                # Maybe a neighbour's input was refused: ask again alone, with this request's context.
                return await adapter.embed(route, items, context)
            return EmbedResult(vectors=np.stack(rows))

        return await self._whole(scheduler, partial(adapter.embed, route, items, context), sum(costs), len(items),
                                 context, tenant)

    def _whole(self, scheduler: Scheduler, call: Callable[[], Awaitable[R]], cost: float, items: int,
               context: CallContext, tenant: Tenant) -> Awaitable[R]:
        """One request as one call (to await): at once when nothing waits, else queued as one work item."""
        if scheduler.can_call_now():
            return scheduler.call_now(call, cost, items, context.deadline)
        return self._queued(scheduler, call, cost, context, tenant)

    async def _queued(self, scheduler: Scheduler, call: Callable[[], Awaitable[R]], cost: float,
                      context: CallContext, tenant: Tenant) -> R:
        async def whole(batch: list[Any], own: bool) -> list[R]:
            return [await call()]

        [result] = await scheduler.submit(self._work([None], [cost], whole, tenant, context.deadline,
                                                     group=None, split=False, batch_size=1, wait_s=0.0))
        return result

    async def rerank(self, query: str, documents: Sequence[str], context: CallContext, tenant: Tenant,
                     counts: Sequence[int] | None) -> RerankResult:
        entry = self._entry or self._resolve()
        adapter, route, batching, scheduler = self.adapter, self.route, entry.batching, entry.scheduler
        docs = list(documents)
        if counts is not None and len(counts) == len(docs):
            costs: Sequence[float] = counts
        else:
            head = estimate_tokens(query)
            costs = [head + estimate_tokens(d) for d in docs]
        if batching.split:  # a model scores pairs: this request's documents go in batches, with its query
            async def run(batch: list[str], own: bool) -> list[float]:
                return (await adapter.rerank(route, query, batch, context)).scores

            work = self._work(docs, costs, run, tenant, context.deadline, group=object(), split=True,
                              batch_size=batching.max_batch_size, wait_s=batching.max_wait_s)
            return RerankResult(scores=await scheduler.submit(work))

        return await self._whole(scheduler, partial(adapter.rerank, route, query, docs, context), sum(costs),
                                 len(docs), context, tenant)


async def _never_run(batch: list[Any], own: bool) -> list[Any]:
    raise RuntimeError("work only weighed, never run")


@dataclass(slots=True)
class _Entry:
    adapter: Adapter  # kept alive so its id stays unique while the entry exists
    scheduler: Scheduler
    batching: Batching


def model_key(route: ModelRoute) -> str:
    """The model behind a route as its adapter sees it: routes equal in it answer equal final inputs
    alike, whatever their alias, prompts, token-id mode or truncation (all applied before the model
    is called), so their inputs share batches."""
    return json.dumps([route.kind, route.served_name, route.upstream.key, dict(route.options)], sort_keys=True,
                      default=str)


def _key(route: ModelRoute, adapter: Adapter) -> tuple[int, Hashable]:
    return id(adapter), adapter.instance_key(route) or (route.kind, route.served_name)


class Schedulers:
    """The scheduler of every model, by (adapter instance, model), kept across snapshots."""

    def __init__(self, observer: Callable[[str], QueueObserver] | None = None) -> None:
        self._observer = observer
        self._entries: dict[tuple[int, Hashable], _Entry] = {}
        self._serving: set[tuple[int, Hashable]] = set()

    def feed(self, route: ModelRoute, adapter: Adapter, merge: bool) -> ModelFeed:
        return ModelFeed(self, adapter, route, merge)

    def entry(self, route: ModelRoute, adapter: Adapter) -> _Entry:
        key = _key(route, adapter)
        entry = self._entries.get(key)
        if entry is None:
            name = route.served_name
            batching = adapter.batching(route)
            observer = self._observer(name) if self._observer is not None else None
            scheduler = Scheduler(name, max_in_flight=batching.max_in_flight, observer=observer,
                                  speed=batching.speed, spread=batching.spread)
            entry = self._entries[key] = _Entry(adapter, scheduler, batching)
        return entry

    @property
    def schedulers(self) -> list[Scheduler]:
        return [e.scheduler for e in self._entries.values()]

    def keep_only(self, serving: Iterable[tuple[ModelRoute, Adapter]]) -> None:
        """Drop the idle schedulers of models that ``serving`` (the snapshot's routes and their
        adapters) no longer names; a busy one goes at a later call, once idle."""
        self._serving = {_key(route, adapter) for route, adapter in serving}
        for key, entry in list(self._entries.items()):
            if key not in self._serving and entry.scheduler.idle:
                del self._entries[key]
                entry.scheduler.cancel_worker()

    async def close(self) -> None:
        for entry in self._entries.values():
            await entry.scheduler.close()
        self._entries.clear()
