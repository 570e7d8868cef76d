"""The embedding cache (flag ``embedding_cache``): a layer in front of every embedding model's
scheduler, its route options, its settings and its store, owned here.

Each input is looked up on its own (``keys``); hits never reach the model, the misses go to it
in one call. The store (``stores``) is this process's LRU (``ROUTER_CACHE_MAX_MB``) or, with
``ROUTER_CACHE_REDIS_URL``, a Redis every replica shares (``ROUTER_CACHE_TTL_SECONDS``): a
different instance from core's ``ROUTER_REDIS_URL``. Entries are each API key's own
(``options: {cache: true}``, the default); ``cache: shared`` gives a public corpus one scope for
every caller; ``cache: false`` opts a route out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core import hookimpl
from core.errors import ConfigError
from plugins.cache.layer import FLAG, ROUTE_OPTIONS, SETTINGS, CacheSettings, EmbeddingCache
from plugins.cache.stores import MemoryStore, RedisStore, VectorStore

if TYPE_CHECKING:
    from core.config import Settings
    from core.metrics import GatewayMetrics
    from core.running import RunningGateway


def _instance(url: str) -> tuple[str, str | int]:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return ("unix", parts.path)
    host = (parts.hostname or "").lower()
    return ("127.0.0.1" if host in _LOOPBACK else host, parts.port or 6379)


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def refuse_shared_redis(limiter_url: str | None, cache_url: str | None) -> None:
    """The rate limiter's Redis and the cache's must be two instances: memory limits and eviction
    are per instance, so cache writes would fill the buckets' memory (noeviction: every keyed
    request 503) or evict buckets (allkeys-lru: a tenant's limit reset). Another database number
    on one instance does not separate them. The URLs are never echoed (they may hold a password)."""
    if limiter_url and cache_url and _instance(limiter_url) == _instance(cache_url):
        raise ConfigError("ROUTER_CACHE_REDIS_URL and ROUTER_REDIS_URL name the same Redis instance (host and "
                          "port); give the embedding cache its own instance (with maxmemory and allkeys-lru), "
                          "or its cache writes evict or starve the rate limiter's buckets")


class CachePlugin:
    def __init__(self) -> None:
        self.cache: EmbeddingCache | None = None

    @hookimpl
    def register_settings(self, register) -> None:
        register(SETTINGS)

    @hookimpl
    def register_feature_flags(self, register) -> None:
        register(FLAG, "Serve repeated embedding inputs from a per-item cache (in process, or Redis with "
                       "ROUTER_CACHE_REDIS_URL); only the misses go to the model. Entries are each API key's "
                       "own; a route may share them across keys (options: {cache: shared}) or opt out "
                       "(options: {cache: false}); see plugins.cache.")

    @hookimpl
    def register_route_options(self, register) -> None:
        for option in ROUTE_OPTIONS:
            register(option)

    @hookimpl
    def register_embed_layers(self, register, settings: Settings, metrics: GatewayMetrics) -> None:
        own = settings.of(CacheSettings)
        refuse_shared_redis(settings.redis_url, own.redis_url)
        self.cache = EmbeddingCache.from_settings(own, metrics)
        register(self.cache)

    @hookimpl
    async def shutdown(self, gateway: RunningGateway) -> None:
        """The gateway closes the layer it serves; a cache another plugin's layer replaced is closed here."""
        if self.cache is not None and gateway.services.layer is not self.cache:
            await self.cache.close()


__all__ = ["FLAG", "CachePlugin", "CacheSettings", "EmbeddingCache", "MemoryStore", "RedisStore", "VectorStore"]
