"""Stage ``adapter``: call the route's model through its scheduler and build the response body.

The plugin object owns the model queues (``core.scheduling``) and the embedding cache
(``core.cache``): it declares their route options (queue bounds, batch tokens, coalescing,
cache, revision), keeps the queues in step with reloads, and closes both at shutdown.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from core import hookimpl
from core.adapters import CallContext
from core.cache import ROUTE_OPTIONS as CACHE_OPTIONS
from core.cache import EmbeddingCache
from core.dialects import DEFAULT
from core.errors import UpstreamTimeout
from core.flow import Flow
from core.scheduling.queues import ROUTE_OPTIONS, ModelQueues
from core.widths import WidthGuard

if TYPE_CHECKING:
    from core.config import Settings
    from core.metrics import GatewayMetrics
    from core.snapshot import Snapshot


class InvokeStage:
    name = "adapter"

    def __init__(self, default_timeout_s: float, queues: ModelQueues, widths: WidthGuard | None = None) -> None:
        self.default_timeout_s = default_timeout_s
        self.queues = queues
        self.widths = widths or WidthGuard()

    async def __call__(self, flow: Flow) -> None:
        route, adapter = flow.routed()
        req = flow.parsed()
        timeout = route.upstream.timeout_s or self.default_timeout_s
        counter = flow.snapshot.counters[route.alias]
        context = CallContext(request_id=flow.request_id, deadline=asyncio.get_running_loop().time() + timeout,
                              is_tokens=req.is_tokens, tokenizer=counter)
        queue = self.queues.queue(flow, check=lambda vectors: self.widths.check(route, adapter, vectors))
        try:
            async with asyncio.timeout(timeout):
                result = await req.call(queue, context)
        except TimeoutError:
            raise UpstreamTimeout(f"The upstream for '{route.alias}' did not answer within {timeout:g} s") from None
        if queue.cache_hits is not None:
            flow.response_headers["X-Cache-Hits"] = str(queue.cache_hits)
        tokens = flow.prompt_tokens if flow.prompt_tokens is not None else result.prompt_tokens
        if tokens is None:  # the upstream left usage out: count with the route's tokenizer
            tokens = sum(req.count(counter))
        outcome = req.respond(route, result, tokens,  # type: ignore[arg-type]
                              check=lambda vectors: self.widths.check(route, adapter, vectors))
        flow.response = (flow.codec or DEFAULT[req.kind]).render(req, outcome)


class InvokePlugin:
    def __init__(self) -> None:
        self.queues = ModelQueues()

    @hookimpl
    def register_stages(self, register, settings: Settings, metrics: GatewayMetrics) -> None:
        self.queues.metrics = metrics
        self.queues.cache = EmbeddingCache.from_settings(settings, metrics)
        register(InvokeStage(settings.request_timeout_s, self.queues))

    @hookimpl
    def register_route_options(self, register) -> None:
        for option in (*ROUTE_OPTIONS, *CACHE_OPTIONS):
            register(option)

    @hookimpl
    def config_changed(self, snapshot: Snapshot) -> None:
        self.queues.config_changed(snapshot)

    @hookimpl
    async def shutdown(self) -> None:
        await self.queues.close()
        if self.queues.cache is not None:
            await self.queues.cache.close()
