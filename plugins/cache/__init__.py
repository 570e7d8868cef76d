"""The embedding cache (flag ``embedding_cache``): a layer in front of every embedding model's
scheduler, its route options, its settings and its store, owned here.

Each input is looked up on its own (``keys``); hits never reach the model, the misses go to it
in one call. The store (``stores``) is this process's LRU (``ROUTER_CACHE_MAX_MB``) or, with
``ROUTER_CACHE_REDIS_URL``, a Redis every replica shares (``ROUTER_CACHE_TTL_SECONDS``): a
different instance from core's ``ROUTER_REDIS_URL``. A route opts out with ``options: {cache: false}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import hookimpl
from plugins.cache.layer import FLAG, ROUTE_OPTIONS, SETTINGS, CacheSettings, EmbeddingCache
from plugins.cache.stores import MemoryStore, RedisStore, VectorStore

if TYPE_CHECKING:
    from core.config import Settings
    from core.metrics import GatewayMetrics
    from core.running import RunningGateway


class CachePlugin:
    def __init__(self) -> None:
        self.cache: EmbeddingCache | None = None

    @hookimpl
    def register_settings(self, register) -> None:
        register(SETTINGS)

    @hookimpl
    def register_feature_flags(self, register) -> None:
        register(FLAG, "Serve repeated embedding inputs from a per-item cache (in process, or Redis with "
                       "ROUTER_CACHE_REDIS_URL); only the misses go to the model. Routes opt out with "
                       "options: {cache: false}; see plugins.cache.")

    @hookimpl
    def register_route_options(self, register) -> None:
        for option in ROUTE_OPTIONS:
            register(option)

    @hookimpl
    def register_embed_layers(self, register, settings: Settings, metrics: GatewayMetrics) -> None:
        self.cache = EmbeddingCache.from_settings(settings.of(CacheSettings), metrics)
        register(self.cache)

    @hookimpl
    async def shutdown(self, gateway: RunningGateway) -> None:
        """The gateway closes the layer it serves; a cache another plugin's layer replaced is closed here."""
        if self.cache is not None and gateway.services.layer is not self.cache:
            await self.cache.close()


__all__ = ["FLAG", "CachePlugin", "CacheSettings", "EmbeddingCache", "MemoryStore", "RedisStore", "VectorStore"]
