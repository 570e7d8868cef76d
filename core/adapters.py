"""What an upstream adapter is, and the registry that builds and shares them.

Adapters turn one model call into whatever their upstream speaks. Core owns everything
common to all of them: parsing, dimensions, base64, top-n, sorting, usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.config import ModelRoute, Settings, UpstreamConfig
    from core.gateway import Snapshot
    from core.flow import Flow
    from core.metrics import GatewayMetrics

log = logging.getLogger("maas.adapters")


@dataclass(slots=True)
class EmbedResult:
    vectors: np.ndarray  # (n, d) float32, in input order
    prompt_tokens: int | None = None


@dataclass(slots=True)
class RerankResult:
    scores: list[float]  # one per document, in document order
    prompt_tokens: int | None = None


@runtime_checkable
class Adapter(Protocol):
    """Optional members: ``prepare(route)`` (load before serving), ``tokenizer_name(route)``,
    classmethods ``is_enabled(settings)`` and ``validate_options(upstream)``,
    ``reports_usage = True`` when the upstream counts prompt tokens itself (the router then
    tokenizes only when a limit or budget needs the counts), and a classmethod
    ``instance_key(route)`` for an adapter that holds a model in memory: routes then share an
    instance only when their upstream and this key are equal (one per model), so a model no
    route names any more is released with its instance."""

    async def embed(self, route: "ModelRoute", inputs: Sequence[Any], flow: "Flow | None") -> EmbedResult:
        """Embed ``inputs`` (strings, or token-id lists when ``flow.request.is_tokens``)."""

    async def rerank(self, route: "ModelRoute", query: str, documents: Sequence[str],
                     flow: "Flow | None") -> RerankResult:
        """Score every document against the query."""

    async def close(self) -> None:
        """Release pools and models. Called once no snapshot uses the adapter."""


@dataclass(slots=True)
class AdapterContext:
    """What a factory may use besides its upstream config."""

    settings: "Settings"
    metrics: "GatewayMetrics | None" = None


def upstream_id(upstream: "UpstreamConfig") -> str:
    """A short, stable name for an upstream config in logs; URLs may carry credentials."""
    return hashlib.sha256(upstream.key.encode()).hexdigest()[:8]


AdapterFactory = Callable[["UpstreamConfig", AdapterContext], Adapter]


async def prepare_adapter(adapter: Adapter, route: "ModelRoute") -> None:
    """Let an adapter load or check what a route needs before the route takes traffic."""
    prepare = getattr(adapter, "prepare", None)
    if prepare is not None:
        result = prepare(route)
        if asyncio.iscoroutine(result):
            await result


class AdapterRegistry:
    """Adapter types by name, and live adapter instances by ``key(route)``.

    Two routes with equal upstream configs share one instance (one connection pool); for a
    type with ``instance_key``, routes share one only when that key is equal too (one loaded
    model). An instance no snapshot refers to any more is closed once its
    in-flight requests finish.
    """

    def __init__(self, context: AdapterContext) -> None:
        self.context = context
        self.factories: dict[str, AdapterFactory] = {}
        self._instances: dict[Hashable, tuple[Adapter, dict[str, str]]] = {}  # key -> (adapter, log fields)
        self._pins: dict[int, list] = {}  # id(snapshot) -> [snapshot, requests holding it]

    def register(self, type_name: str, factory: AdapterFactory) -> None:
        if type_name in self.factories:
            raise ConfigError(f"adapter type {type_name!r} is registered twice")
        self.factories[type_name] = factory

    def key(self, route: "ModelRoute") -> Hashable:
        per_route = getattr(self.factories.get(route.upstream.type), "instance_key", None)
        return route.upstream if per_route is None else (route.upstream, per_route(route))

    def instance(self, route: "ModelRoute") -> Adapter:
        key = self.key(route)
        held = self._instances.get(key)
        if held is None:
            upstream = route.upstream
            fields = {"adapter_type": upstream.type, "upstream_id": upstream_id(upstream)}
            if key is not upstream:  # one instance per instance_key: say which one in the logs
                part = key[1]  # type: ignore[index]
                fields["instance"] = "/".join(map(str, part)) if isinstance(part, tuple) else str(part)
            held = self._instances[key] = (self.factories[upstream.type](upstream, self.context), fields)
            log.info("adapter created", extra=fields)
        return held[0]

    def pin(self, snapshot: "Snapshot") -> None:
        """Keep every adapter of ``snapshot`` open until ``unpin``: one count per request, whatever
        the number of routes."""
        held = self._pins.get(id(snapshot))
        if held is None:
            self._pins[id(snapshot)] = [snapshot, 1]
        else:
            held[1] += 1

    def unpin(self, snapshot: "Snapshot") -> None:
        held = self._pins[id(snapshot)]
        held[1] -= 1
        if not held[1]:
            del self._pins[id(snapshot)]

    def _busy(self, adapter: Adapter) -> bool:
        return any(a is adapter for snapshot, _ in self._pins.values() for a in snapshot.adapters.values())

    def retire_unused(self, in_use: set[Hashable]) -> "asyncio.Future[list[None]]":
        """Close instances whose key no snapshot uses, after their in-flight requests end.

        They leave the registry before this returns, so a snapshot built later gets a fresh
        instance rather than one about to close. The returned future completes once every
        retired instance is closed; awaiting it is optional.
        """
        retired = [self._instances.pop(k) for k in list(self._instances) if k not in in_use]
        return asyncio.gather(*(self._close_when_idle(a, fields) for a, fields in retired))

    async def _close_when_idle(self, adapter: Adapter, fields: dict[str, str]) -> None:
        while self._busy(adapter):  # a request on a snapshot that has it is still running
            await asyncio.sleep(0.05)
        try:
            await adapter.close()
        except Exception:  # closing must not stop the others from closing
            log.exception("closing adapter for %s failed", fields["adapter_type"], extra=fields)
        else:
            log.info("adapter closed", extra=fields)

    async def close_all(self) -> None:
        await self.retire_unused(set())
