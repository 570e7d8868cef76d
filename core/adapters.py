"""What an upstream adapter is, and the registry that builds and shares them.

Every adapter type subclasses ``Adapter`` and says what it is: the ``kinds`` of model it serves,
the options its ``upstream:`` block takes (``upstream_options``) and those a route's
``options:`` block takes (``route_options``). The gateway checks a route against its type
before any load: wrong kind, unknown or bad options and whatever ``validate_route`` refuses
are config errors with file and line, in ``maas check-config`` too. The optional members have
working defaults here, so nothing probes for them.

Adapters turn one model call into whatever their upstream speaks. Core owns everything
common to all of them: parsing, dimensions, base64, top-n, sorting, usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from core.errors import ConfigError, InvalidRequest
from core.kinds import KINDS
from core.options import OptionSchema
from core.precedence import Claims
from core.variant import DEFAULT_VARIANT, Variant

if TYPE_CHECKING:
    from core.config import ModelRoute, Settings, UpstreamConfig
    from core.metrics import GatewayMetrics
    from core.tokenization import TokenCounter

log = logging.getLogger("maas.adapters")



@dataclass(slots=True)
class EmbedResult:
    vectors: np.ndarray  # (n, d) float32, in input order
    prompt_tokens: int | None = None


@dataclass(slots=True)
class RerankResult:
    scores: list[float]  # one per document, in document order
    prompt_tokens: int | None = None


@dataclass(slots=True, unsafe_hash=True)  # hashable by its fields, as when it was frozen
class CallContext:
    """What an adapter may know about the call besides route and inputs. A value: never changed
    once made (``dataclasses.replace`` makes another); not frozen, as a frozen dataclass costs
    three times as long to make, and one is made for every call.

    ``request_id`` is None for a call that serves several requests at once (coalescing);
    ``deadline`` is on the event loop's clock; ``is_tokens`` says the inputs are token-id
    lists; ``tokenizer`` is the route's token counter (it decodes token ids to text);
    ``variant`` is what the request asks beyond its inputs (``core.variant``: the default, or
    fields the adapter declared in ``variants``).
    """

    request_id: str | None = None
    deadline: float | None = None
    is_tokens: bool = False
    tokenizer: TokenCounter | None = None
    variant: Variant = DEFAULT_VARIANT

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - asyncio.get_running_loop().time()


DEFAULT_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class Batching:
    """How the scheduler (``core.scheduling``) feeds an adapter.

    ``split``: the adapter runs a model on batches of inputs, so a request is cut into items
    and batched with other requests' (up to ``max_batch_size``, waiting up to ``max_wait_s``
    for a batch to fill); otherwise each request is one call. At most ``max_in_flight`` calls
    run at once: a model on every core runs one batch at a time, an HTTP upstream several.
    ``speed``: the model's batch time measured as it loaded (seconds per call, per padded
    token), so admission knows it before the first request ran (None: learned from traffic).
    ``spread``: the inputs of several queued requests are shared out over the free call slots (a
    batch takes its share, the next slot the rest) instead of filling one batch first: batches
    that run together on a CPU's cores get through more inputs than one as large on all of them.
    A lone request is not cut up for it.
    """

    max_in_flight: int = DEFAULT_IN_FLIGHT
    split: bool = False
    max_batch_size: int = 32
    max_wait_s: float = 0.0
    speed: tuple[float, float] | None = None
    spread: bool = False


@dataclass(slots=True)
class AdapterContext:
    """What an adapter may use besides its upstream config."""

    settings: Settings
    metrics: GatewayMetrics | None = None


class Adapter:
    """The base of every adapter type. Override ``embed`` and/or ``rerank``; the rest is optional.

    ``reports_usage = True`` when the upstream counts prompt tokens itself (the router then
    tokenizes only when a limit or budget needs the counts). ``instance_key(route)`` is for an
    adapter that holds a model in memory: routes then share an instance only when their
    upstream and this key are equal (one per model), so a model no route names any more is
    released with its instance.
    """

    kinds: ClassVar[frozenset[str]] = KINDS
    upstream_options: ClassVar[OptionSchema] = OptionSchema()
    route_options: ClassVar[OptionSchema] = OptionSchema()
    reports_usage: ClassVar[bool] = False
    #: the ``core.variant.Variant`` fields it honours away from their default (the rest are refused)
    variants: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        self.upstream = upstream
        self.context = context
        #: the upstream's options, checked, with every default filled in
        self.config: dict[str, Any] = self.upstream_options.check(upstream.options, f"upstream type {upstream.type!r}")

    @classmethod
    def is_enabled(cls, settings: Settings) -> bool:
        """False: this type's models do not exist under these settings (404, not listed)."""
        return True

    @classmethod
    def instance_key(cls, route: ModelRoute) -> Hashable | None:
        return None

    @classmethod
    def validate_route(cls, route: ModelRoute) -> None:
        """Checks the schemas cannot express (raise ValueError); runs in ``maas check-config``."""

    @classmethod
    def findings(cls, route: ModelRoute) -> list[tuple[str, str]]:
        """What would keep ``route`` from loading, found without loading anything: (field, message)
        pairs. ``maas check-config`` fails on them; a live reload logs them as warnings."""
        return []

    async def prepare(self, route: ModelRoute) -> None:
        """Load or check what ``route`` needs before it takes traffic."""

    def describe(self, route: ModelRoute) -> dict[str, Any]:
        """What the adapter knows of the route's model: ``dimensions``, ``max_input_tokens``
        (for ``/v1/models/{id}``; a missing key is unknown)."""
        return {}

    def tokenizer_name(self, route: ModelRoute) -> str | None:
        """The tokenizer that counts this route's tokens, when the adapter knows it."""
        return None

    def batching(self, route: ModelRoute) -> Batching:
        """How the scheduler may feed this route's model (whole requests, ``max_in_flight`` at once)."""
        return Batching(max_in_flight=int(self.config.get("max_in_flight") or DEFAULT_IN_FLIGHT))

    async def embed(self, route: ModelRoute, inputs: Sequence[Any], call: CallContext) -> EmbedResult:
        """Embed ``inputs`` (strings, or token-id lists when ``call.is_tokens``)."""
        raise InvalidRequest(f"The model '{route.alias}' does not serve embeddings", param="model",
                             code="wrong_model_type")

    async def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
                     call: CallContext) -> RerankResult:
        """Score every document against the query."""
        raise InvalidRequest(f"The model '{route.alias}' does not serve rerank", param="model",
                             code="wrong_model_type")

    async def close(self) -> None:
        """Release pools and models. Called once no snapshot uses the adapter."""


def upstream_id(upstream: UpstreamConfig) -> str:
    """A short, stable name for an upstream config in logs; URLs may carry credentials."""
    return hashlib.sha256(upstream.key.encode()).hexdigest()[:8]


AdapterType = type[Adapter]


class UsesAdapters(Protocol):
    """What holds adapters while requests run on it (a serving snapshot)."""

    def adapters_in_use(self) -> Iterator[Adapter]: ...


class AdapterRegistry:
    """Adapter types by name, and live adapter instances by ``key(route)``.

    Two routes with equal upstream configs share one instance (one connection pool); for a
    type with ``instance_key``, routes share one only when that key is equal too (one loaded
    model). An instance no snapshot refers to any more is closed once its
    in-flight requests finish.
    """

    def __init__(self, context: AdapterContext) -> None:
        self.context = context
        self.factories: dict[str, AdapterType] = {}
        self._claims = Claims()  # type name -> who registered it
        self._instances: dict[Hashable, tuple[Adapter, dict[str, str]]] = {}  # key -> (adapter, log fields)
        self._pins: dict[int, list[Any]] = {}  # id(snapshot) -> [snapshot, requests holding it]

    def registrar(self, origin: str, builtin: bool) -> Callable[[str, AdapterType], None]:
        """The ``register`` callback one plugin's ``register_adapters`` receives."""

        def register(type_name: str, cls: AdapterType) -> None:
            self.add(type_name, cls, origin=origin, builtin=builtin)

        return register

    def add(self, type_name: str, cls: AdapterType, *, origin: str = "?", builtin: bool = False) -> None:
        """Register a type. A third party replaces a built-in type; two of one standing clash."""
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigError(f"adapter type {type_name!r} from {origin} must be a subclass of core.adapters.Adapter")
        if not cls.kinds or not cls.kinds <= KINDS:
            raise ConfigError(f"adapter type {type_name!r} from {origin}: kinds must be a non-empty subset of "
                              f"{sorted(KINDS)}")
        if self._claims.claim(type_name, origin, builtin, f"adapter type {type_name!r}"):
            self.factories[type_name] = cls

    def origin(self, type_name: str) -> str:
        return self._claims.origin(type_name)

    def key(self, route: ModelRoute) -> Hashable:
        per_route = self.factories[route.upstream.type].instance_key(route)
        return route.upstream if per_route is None else (route.upstream, per_route)

    def instance(self, route: ModelRoute) -> Adapter:
        key = self.key(route)
        held = self._instances.get(key)
        if held is None:
            upstream = route.upstream
            fields = {"adapter_type": upstream.type, "upstream_id": upstream_id(upstream)}
            if isinstance(key, tuple):  # one instance per instance_key: say which one in the logs
                part = key[1]
                fields["instance"] = "/".join(map(str, part)) if isinstance(part, tuple) else str(part)
            held = self._instances[key] = (self.factories[upstream.type](upstream, self.context), fields)
            log.info("adapter created", extra=fields)
        return held[0]

    def pin(self, snapshot: UsesAdapters) -> None:
        """Keep every adapter of ``snapshot`` open until ``unpin``: one count per request, whatever
        the number of routes."""
        held = self._pins.get(id(snapshot))
        if held is None:
            self._pins[id(snapshot)] = [snapshot, 1]
        else:
            held[1] += 1

    def unpin(self, snapshot: UsesAdapters) -> None:
        held = self._pins[id(snapshot)]
        held[1] -= 1
        if not held[1]:
            del self._pins[id(snapshot)]

    def _busy(self, adapter: Adapter) -> bool:
        return any(a is adapter for snapshot, _ in self._pins.values() for a in snapshot.adapters_in_use())

    def retire_unused(self, in_use: set[Hashable]) -> asyncio.Future[list[None]]:
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
