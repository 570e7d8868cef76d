"""The per-item embedding cache (flag ``embedding_cache``), in front of the model's scheduler.

Each input of a request is looked up on its own (``plugins.cache.keys``); hits are served from the
store, the misses (each distinct one once) go to the model in one call, through the scheduler,
and the answer is put back together in the caller's order. Hits never enter a queue, so they
count in no queue bound or admission estimate. The store is this process's LRU
(``ROUTER_CACHE_MAX_MB``) or, with ``ROUTER_CACHE_REDIS_URL``, a Redis every replica shares
(``ROUTER_CACHE_TTL_SECONDS``). Entries are the caller's own (``options: {cache: true}``, the
default): its API key's name is in every key, so no key learns what another embedded, by the
``X-Cache-Hits`` header or by time. ``cache: shared`` gives the route one scope for every caller
(a public corpus: any caller then learns which texts anyone embedded); ``cache: false`` opts out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.adapters import EmbedResult
from core.config.sections import EnvOption, SettingsSection
from core.kinds import EMBEDDINGS
from core.options import Option
from plugins.cache.keys import SHARED, item_keys, route_digest, scope_of, scoped_digest
from plugins.cache.stores import MemoryStore, RedisStore, VectorStore

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.metrics import GatewayMetrics
    from core.options import OptionSchema
    from core.served import ModelCall

FLAG = "embedding_cache"
ROUTE_OPTIONS = (
    Option("cache", bool, True, "with the embedding_cache flag on: true serves each API key's repeated inputs "
                                "from its own entries; shared, one scope for every caller (a public corpus: "
                                "reveals to every key which texts were embedded); false, no cache",
           choices=(SHARED,), shapes_output=False),
)

Compute = Callable[[list[Any]], Awaitable[EmbedResult]]


@dataclass(frozen=True, slots=True)
class CacheSettings:
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    max_mb: float = 256.0
    ttl_s: float = 7 * 86400.0


SETTINGS = SettingsSection(CacheSettings, (
    EnvOption("ROUTER_CACHE_REDIS_URL", "redis_url", "redis_url", None,
              "the embedding cache's own Redis, shared by replicas (not ROUTER_REDIS_URL's instance)", secret=True),
    EnvOption("ROUTER_CACHE_MAX_MB", "max_mb", "float", 256.0, "bound of the in-process cache (MiB)"),
    EnvOption("ROUTER_CACHE_TTL_SECONDS", "ttl_s", "float", 7 * 86400.0, "how long an entry lives in Redis",
              minimum=1),
), title="embedding cache")


class RouteCache:
    """The cache bound to one route: its digest and the caller's scope in every key, its alias on
    the metrics."""

    def __init__(self, cache: EmbeddingCache, alias: str, digest: bytes, shared: bool = False) -> None:
        self.cache, self.alias, self.digest, self.shared = cache, alias, digest, shared

    def scope(self, call: ModelCall) -> str:
        return scope_of(call.tenant.name, self.shared)

    def digest_for(self, call: ModelCall) -> bytes:
        """The digest of ``call``'s entries: the route's, its scope's, its shaping fields'."""
        return scoped_digest(self.digest, self.scope(call), call.shaping)

    async def embed(self, inputs: Sequence[Any], is_tokens: bool, compute: Compute,
                    call: ModelCall) -> tuple[EmbedResult, int]:
        return await self.cache.embed(self.alias, self.digest_for(call), inputs, is_tokens, compute,
                                      call.token_counts, owner=self.scope(call))


class EmbeddingCache:
    def __init__(self, store: VectorStore, metrics: GatewayMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics

    @classmethod
    def from_settings(cls, settings: CacheSettings, metrics: GatewayMetrics | None) -> EmbeddingCache:
        events = metrics.cache_events() if metrics is not None else None
        store: VectorStore
        if settings.redis_url:
            store = RedisStore(settings.redis_url, ttl_s=settings.ttl_s, events=events)
        else:
            store = MemoryStore(int(settings.max_mb * 1024 * 1024), events=events)
        return cls(store, metrics)

    def counts_usage(self, flags: frozenset[str]) -> bool:
        return FLAG in flags

    def bind(self, route: ModelRoute, flags: frozenset[str], *, upstream_schema: OptionSchema,
             route_schema: OptionSchema) -> RouteCache | None:
        mode = route.options.get("cache", True)
        if FLAG not in flags or route.kind != EMBEDDINGS or mode is False:
            return None
        return RouteCache(self, route.alias, route_digest(route, upstream_schema, route_schema), mode == SHARED)

    async def embed(self, alias: str, digest: bytes, inputs: Sequence[Any], is_tokens: bool, compute: Compute,
                    token_counts: Sequence[int] | None = None, owner: str = "") -> tuple[EmbedResult, int]:
        """The vectors of ``inputs`` and how many came from the cache; ``compute`` embeds the rest.
        ``digest`` is the route's for the caller's scope (``RouteCache.digest_for``), ``owner`` that
        scope's name (the store shares its room between owners). ``compute`` answers checked
        vectors (the served model's width guard), so a bad answer fails the request and is never
        stored."""
        keys = item_keys(digest, inputs, is_tokens)
        found = [None if v is None else np.frombuffer(v, dtype=np.float32) for v in await self.store.get_many(keys)]
        if len({v.shape for v in found if v is not None}) > 1:
            found = [None] * len(found)  # entries that disagree on the width: trust none of them
        first: dict[bytes, int] = {}  # each distinct missing input once, in order
        for i, v in enumerate(found):
            if v is None:
                first.setdefault(keys[i], i)
        hit = [v is not None for v in found]
        hits = sum(hit)
        prompt_tokens = None
        if first:
            result = await compute([inputs[i] for i in first.values()])
            fresh = np.asarray(result.vectors, dtype=np.float32)
            if hits and fresh.shape[1:] != next(v for v in found if v is not None).shape:
                return await self._uncached(alias, inputs, keys, compute, owner)  # the model changed under its name
            rows = dict(zip(first, fresh, strict=True))
            await self.store.put_many([(k, row.tobytes()) for k, row in rows.items()], owner)
            found = [rows[keys[i]] if v is None else v for i, v in enumerate(found)]
            prompt_tokens = result.prompt_tokens if not hits and len(first) == len(inputs) else None
        self._count(alias, hit, token_counts)
        return EmbedResult(vectors=np.stack([v for v in found if v is not None]), prompt_tokens=prompt_tokens), hits

    async def _uncached(self, alias: str, inputs: Sequence[Any], keys: list[bytes],
                        compute: Compute, owner: str) -> tuple[EmbedResult, int]:
        result = await compute(list(inputs))
        vectors = np.asarray(result.vectors, dtype=np.float32)
        await self.store.put_many([(k, row.tobytes()) for k, row in zip(keys, vectors, strict=True)], owner)
        self._count(alias, [False] * len(inputs), None)
        return EmbedResult(vectors=vectors, prompt_tokens=result.prompt_tokens), 0

    def _count(self, alias: str, hit: list[bool], token_counts: Sequence[int] | None) -> None:
        if self.metrics is None:
            return
        hits = sum(hit)
        self.metrics.cache_hits.labels(model=alias).inc(hits)
        self.metrics.cache_misses.labels(model=alias).inc(len(hit) - hits)
        if hits and token_counts is not None and len(token_counts) == len(hit):
            served = sum(n for n, h in zip(token_counts, hit, strict=True) if h)
            self.metrics.cache_tokens.labels(model=alias).inc(served)

    async def close(self) -> None:
        await self.store.close()
