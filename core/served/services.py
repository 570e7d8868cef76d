"""What outlives a snapshot behind the served models: the schedulers, the plugins' embed layer
(the embedding cache) and the widths pinned from remote answers. ``ModelServices.serve`` builds
one route's ``ServedModel`` over them; ``keep_only`` drops what the new snapshot no longer has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from core.precedence import Claims
from core.scheduling.queues import COALESCE, Schedulers
from core.served.model import ModelFacts, ServedModel
from core.served.widths import Pins, WidthGuard
from core.space import RouteSpace

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute, Settings
    from core.metrics import GatewayMetrics
    from core.options import OptionSchema
    from core.served.layers import EmbedLayer
    from core.tokenization import TokenCounter


class ModelServices:
    def __init__(self, settings: Settings, metrics: GatewayMetrics | None = None) -> None:
        self.default_timeout_s = settings.request_timeout_s
        self.schedulers = Schedulers(metrics.queue_observer if metrics is not None else None)
        self.layer: EmbedLayer | None = None
        self._claims = Claims()
        self._pins: Pins = {}

    def registrar(self, origin: str, builtin: bool) -> Callable[[EmbedLayer], None]:
        """The ``register`` callback one plugin's ``register_embed_layers`` receives."""

        def register(layer: EmbedLayer) -> None:
            if self._claims.claim("layer", origin, builtin, "an embed layer"):
                self.layer = layer

        return register

    def serve(self, route: ModelRoute, adapter: Adapter, counter: TokenCounter, flags: frozenset[str], *,
              upstream_schema: OptionSchema, route_schema: OptionSchema) -> ServedModel:
        """``route``'s served model under ``flags`` (the snapshot's feature flags); the schemas
        declare which options shape the model's answers (what a cache keys on)."""
        facts = ModelFacts.of(route, adapter, self.default_timeout_s)
        feed = self.schedulers.feed(route, adapter, merge=COALESCE in flags)
        guard = WidthGuard(route.alias, facts.dimensions, self._pins, (route.upstream.key, route.served_name))
        layer = self.layer
        bound = (layer.bind(route, flags, upstream_schema=upstream_schema, route_schema=route_schema)
                 if layer is not None else None)
        # With a layer on, or merged calls, usage is counted here for every route: a merged call
        # reports one total for several requests, and a layer's answers reach no upstream.
        counts_here = COALESCE in flags or (layer is not None and layer.counts_usage(flags))
        return ServedModel(route, adapter, counter, facts, feed, guard, layer=bound,
                           reports_usage=adapter.reports_usage and not counts_here,
                           space=RouteSpace.of(route, upstream_schema, route_schema))

    def keep_only(self, models: Iterable[ServedModel]) -> None:
        """Drop the idle schedulers of models that ``models`` (the serving snapshot's) do not name."""
        self.schedulers.keep_only((m.route, m.adapter) for m in models)

    async def close(self) -> None:
        await self.schedulers.close()
        if self.layer is not None:
            await self.layer.close()
