"""What outlives a snapshot behind the served models: the schedulers, the embedding cache and the
widths pinned from remote answers. ``ModelServices.serve`` builds one route's ``ServedModel``
over them; ``keep_only`` drops what the new snapshot no longer has.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from core.cache import FLAG as CACHE
from core.cache import EmbeddingCache, route_digest
from core.scheduling.queues import COALESCE, Schedulers
from core.served.model import ModelFacts, ServedModel
from core.served.widths import Pins, WidthGuard

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute, Settings
    from core.metrics import GatewayMetrics
    from core.options import OptionSchema
    from core.tokenization import TokenCounter


class ModelServices:
    def __init__(self, settings: Settings, metrics: GatewayMetrics | None = None,
                 cache: EmbeddingCache | None = None) -> None:
        self.default_timeout_s = settings.request_timeout_s
        self.schedulers = Schedulers(metrics.queue_observer if metrics is not None else None)
        self.cache = cache if cache is not None else EmbeddingCache.from_settings(settings, metrics)
        self._pins: Pins = {}

    def serve(self, route: ModelRoute, adapter: Adapter, counter: TokenCounter, flags: frozenset[str], *,
              upstream_schema: OptionSchema, route_schema: OptionSchema) -> ServedModel:
        """``route``'s served model under ``flags`` (the snapshot's feature flags); the schemas
        declare which options shape the model's answers (the cache key)."""
        facts = ModelFacts.of(route, adapter, self.default_timeout_s)
        feed = self.schedulers.feed(route, adapter, merge=COALESCE in flags)
        guard = WidthGuard(route.alias, facts.dimensions, self._pins, (route.upstream.key, route.served_name))
        cached = route.kind == "embeddings" and CACHE in flags and route.options.get("cache", True) is not False
        # With either flag on, usage is counted here for every route, so it is the same count
        # whether the cache served an input or a merged call reported one total for several.
        reports_usage = adapter.reports_usage and CACHE not in flags and COALESCE not in flags
        return ServedModel(route, adapter, counter, facts, feed, guard,
                           cache=self.cache if cached else None,
                           cache_digest=route_digest(route, upstream_schema, route_schema) if cached else b"",
                           reports_usage=reports_usage)

    def keep_only(self, adapters: Iterable[Adapter]) -> None:
        """Drop the idle schedulers of adapters that ``adapters`` (the serving snapshot's) do not hold."""
        self.schedulers.keep_only(list(adapters))

    async def close(self) -> None:
        await self.schedulers.close()
        await self.cache.close()
