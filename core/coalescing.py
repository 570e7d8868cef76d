"""Request coalescing: concurrent small embedding requests for one route share one adapter call.

Behind the ``coalesce_embeddings`` feature flag. Text requests with at most ``coalesce_max_request``
inputs (route option, default 8) are queued per (adapter, route); within
``coalesce_wait_ms`` (default 2) of the first one, up to ``coalesce_max_batch`` inputs
(default 64) go upstream as one call, and each request gets its own rows back. Upstream
calls per second drop by the batch size, which is what an upstream that pays per call
(HTTP, JSON, scheduling) wants. It works for any adapter: it only calls ``adapter.embed``.

The merged call is made with ``flow=None`` (it serves many requests), so the upstream sees
no single request id. Token-id inputs are not merged: adapters decode them with the flow's
tokenizer. If a merged call is refused as bad input, each request is retried alone, so one
caller's bad input never fails its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.adapters import CallContext, EmbedResult
from core.batching import MicroBatcher
from core.errors import InvalidRequest, UpstreamRejected
from core.options import Option

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute

log = logging.getLogger("maas.coalescing")

FLAG = "coalesce_embeddings"
DEFAULT_MAX_REQUEST = 8
DEFAULT_MAX_BATCH = 64
DEFAULT_WAIT_MS = 2.0


ROUTE_OPTIONS = (
    Option("coalesce_max_request", int, DEFAULT_MAX_REQUEST, "largest request (inputs) that is merged", minimum=1),
    Option("coalesce_max_batch", int, DEFAULT_MAX_BATCH, "most inputs in one merged upstream call", minimum=1),
    Option("coalesce_wait_ms", float, DEFAULT_WAIT_MS, "how long the first request waits for others", minimum=0),
)


@dataclass(slots=True)
class _Lane:
    """One queue: the adapter and route it calls (kept alive so their ids stay unique)."""

    adapter: Adapter
    route: ModelRoute
    batcher: MicroBatcher


class EmbedCoalescer:
    def __init__(self, max_in_flight: int = 4) -> None:
        self.max_in_flight = max_in_flight
        self._lanes: dict[tuple[int, int], _Lane] = {}
        self._serving: Mapping[str, ModelRoute] = {}

    @staticmethod
    def eligible(route: ModelRoute, inputs: Sequence[Any]) -> bool:
        return (0 < len(inputs) <= int(route.options.get("coalesce_max_request", DEFAULT_MAX_REQUEST))
                and isinstance(inputs[0], str))

    async def embed(self, adapter: Adapter, route: ModelRoute, inputs: Sequence[Any],
                    context: CallContext) -> EmbedResult:
        lane = self._lane(adapter, route)
        try:
            rows = await lane.batcher.submit(list(inputs))
        except (InvalidRequest, UpstreamRejected):
            # Maybe a neighbour's input was refused: ask again alone, with this request's context.
            return await adapter.embed(route, inputs, context)
        return EmbedResult(vectors=np.stack(rows))

    def _lane(self, adapter: Adapter, route: ModelRoute) -> _Lane:
        key = (id(adapter), id(route))
        lane = self._lanes.get(key)
        if lane is None:
            self._prune()
            lane = self._lanes[key] = _Lane(adapter, route, self._batcher(adapter, route))
        return lane

    def _batcher(self, adapter: Adapter, route: ModelRoute) -> MicroBatcher:
        async def call(batch: list[Any]) -> np.ndarray:
            # one call for many requests: no single request id, no per-request deadline
            result = await adapter.embed(route, batch, CallContext())
            return result.vectors

        opts = route.options
        return MicroBatcher(call, max_batch_size=int(opts.get("coalesce_max_batch", DEFAULT_MAX_BATCH)),
                            max_wait_s=float(opts.get("coalesce_wait_ms", DEFAULT_WAIT_MS)) / 1000.0,
                            name=f"coalesce-{route.alias}", max_in_flight=self.max_in_flight)

    def config_changed(self, serving: Mapping[str, ModelRoute]) -> None:
        """A new snapshot serves ``serving``: drop the lanes of changed or removed routes."""
        self._serving = serving
        self._prune()

    def _prune(self) -> None:
        """Drop idle lanes whose route the serving config no longer has (changed or removed by a
        reload). A lane busy at the reload goes when the next lane is made."""
        for key, lane in list(self._lanes.items()):
            if self._serving.get(lane.route.alias) is not lane.route and lane.batcher.idle:
                del self._lanes[key]
                lane.batcher.cancel_worker()

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.batcher.close()
        self._lanes.clear()
