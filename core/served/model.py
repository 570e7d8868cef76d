"""A model being served: one route's model with everything it needs to answer, built once per snapshot.

``ServedModel`` holds its route, its adapter, its token counter, the facts resolved once
(``ModelFacts``: width, input limit, input types, top-k cap, timeout) and its service: a plugin's
layer when on (the embedding cache) → the scheduler (``core.scheduling.queues.ModelFeed``) → the adapter,
with the width guard over every fresh answer. ``embed``, ``rerank`` and ``tokenize`` take what
the caller must say (``ModelCall``: tenant, deadline, request id, token counts) and need no HTTP
request: the chain's ``adapter`` stage, a bulk job or a test call them alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from core import deadlines
from core.adapters import CallContext, EmbedResult, RerankResult
from core.errors import InvalidRequest, UpstreamTimeout
from core.served.call import ModelCall
from core.space import RouteSpace
from core.variant import DEFAULT_VARIANT, Variant
from core.vectors import as_float32

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute
    from core.scheduling.queues import ModelFeed
    from core.scheduling.work import Tenant
    from core.served.layers import BoundLayer
    from core.served.widths import WidthGuard
    from core.tokenization import TokenCounter


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What a route's model is, each fact resolved once: the route's declaration, else what the
    loaded model says (``Adapter.describe``), else unknown (None)."""

    dimensions: int | None
    max_input_tokens: int | None
    input_types: tuple[str, ...]
    max_top_k: int | None
    allow_dimensions: bool
    timeout_s: float  # the upstream's timeout, else ROUTER_REQUEST_TIMEOUT_SECONDS

    @classmethod
    def of(cls, route: ModelRoute, adapter: Adapter, default_timeout_s: float) -> ModelFacts:
        known = adapter.describe(route)
        dims = route.dimensions or known.get("dimensions")
        limit = route.max_input_tokens or known.get("max_input_tokens")
        return cls(dimensions=int(dims) if dims else None, max_input_tokens=int(limit) if limit else None,
                   input_types=tuple(sorted(set(route.prompts) - {"default"})) if route.prompts is not None else (),
                   max_top_k=route.max_top_k, allow_dimensions=route.allow_dimensions,
                   timeout_s=route.upstream.timeout_s or default_timeout_s)


@dataclass(slots=True)
class Embedded:
    """Vectors in input order, checked; the tokens the upstream reported; how many inputs the cache served."""

    vectors: np.ndarray
    prompt_tokens: int | None = None
    cache_hits: int | None = None  # inputs its layer (the cache) answered; None: no layer on this model


class ServedModel:
    def __init__(self, route: ModelRoute, adapter: Adapter, counter: TokenCounter, facts: ModelFacts,
                 feed: ModelFeed, guard: WidthGuard, layer: BoundLayer | None = None,
                 reports_usage: bool | None = None, space: RouteSpace | None = None) -> None:
        self.route = route
        self.alias = route.alias
        self.kind = route.kind
        self.adapter = adapter
        self.counter = counter
        self.facts = facts
        self.feed = feed
        self.guard = guard
        self.layer = layer  # a plugin's layer in front of the scheduler (the embedding cache), if on
        #: its answers carry the upstream's own token counts (else the router counts them)
        self.reports_usage = adapter.reports_usage if reports_usage is None else reports_usage
        #: what of the route decides its embedding space (``core.space``)
        self.space = space if space is not None else RouteSpace.of(route)

    @property
    def width(self) -> int | None:
        """The width of its vectors: declared, known from the loaded model, or pinned from an answer."""
        return self.guard.expected

    def __repr__(self) -> str:
        return f"ServedModel({self.alias!r}, {self.route.upstream.type}, {self.route.served_name!r})"

    def _from_now(self) -> float:
        """The deadline of a call that names none: the model's timeout from now."""
        return asyncio.get_running_loop().time() + self.facts.timeout_s

    def _timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"The upstream for '{self.alias}' did not answer within {self.facts.timeout_s:g} s")

    def check_variant(self, variant: Variant) -> None:
        """Refuse (400) a variant its adapter cannot answer (``Adapter.variants``)."""
        for name, value in variant.changed().items():
            if name not in self.adapter.variants:
                raise InvalidRequest(f"The model '{self.alias}' cannot answer with {name}={str(value).lower()}: "
                                     f"its upstream type {self.route.upstream.type!r} does not offer it",
                                     param=name, code="unsupported_parameter")

    async def embed(self, inputs: Sequence[Any], call: ModelCall = ModelCall(), *,  # noqa: B008 - immutable
                    is_tokens: bool = False, variant: Variant = DEFAULT_VARIANT) -> Embedded:
        """The vectors of ``inputs`` (strings, or token-id lists with ``is_tokens``), exactly as
        the model gives them for ``variant`` (the caller applies ``dimensions`` and encodings)."""
        deadline = call.deadline if call.deadline is not None else self._from_now()
        context = CallContext(request_id=call.request_id, deadline=deadline, is_tokens=is_tokens,
                              tokenizer=self.counter, variant=variant)
        if variant is not DEFAULT_VARIANT:  # another variant's answers are other entries of the cache
            call = replace(call, shaping={**call.shaping, **variant.changed()})
        try:
            with deadlines.timeout_at(deadline):
                tenant = call.tenant if call.priority is None else call.queued_as
                if self.layer is None:  # ``_fresh``, inline: the common call
                    result = await self.feed.embed(inputs, context, tenant, call.token_counts)
                    vectors = self.guard.check(as_float32(result.vectors), len(inputs))
                    return Embedded(vectors, result.prompt_tokens)
                counts = call.token_counts
                result, hits = await self.layer.embed(
                    inputs, is_tokens,
                    lambda misses: self._fresh(misses, context, tenant,
                                               counts if len(misses) == len(inputs) else None), call)
                # What the layer answered itself is checked too: a stored vector of another width
                # (a shared store, a route whose model changed) must never reach a client.
                vectors = self.guard.check(as_float32(result.vectors), len(inputs))
                return Embedded(vectors, result.prompt_tokens, hits)
        except TimeoutError:
            raise self._timed_out() from None

    async def _fresh(self, inputs: Sequence[Any], context: CallContext, tenant: Tenant,
                     counts: Sequence[int] | None) -> EmbedResult:
        result = await self.feed.embed(inputs, context, tenant, counts)
        result.vectors = self.guard.check(as_float32(result.vectors), len(inputs))
        return result

    async def rerank(self, query: str, documents: Sequence[str], call: ModelCall = ModelCall(),  # noqa: B008
                     *, variant: Variant = DEFAULT_VARIANT) -> RerankResult:
        """One score per document, in document order (``variant.activation``: sigmoid or raw logit)."""
        deadline = call.deadline if call.deadline is not None else self._from_now()
        context = CallContext(request_id=call.request_id, deadline=deadline, tokenizer=self.counter,
                              variant=variant)
        tenant = call.tenant if call.priority is None else call.queued_as
        try:
            with deadlines.timeout_at(deadline):
                return await self.feed.rerank(query, documents, context, tenant, call.token_counts)
        except TimeoutError:
            raise self._timed_out() from None

    def tokenize(self, texts: Sequence[str], add_special_tokens: bool = True,
                 check: Callable[[int], None] | None = None) -> list[list[dict[str, Any]]]:
        """The model's own tokens of each text (answered here: nothing is queued); ``check`` sees
        the number of tokens before the answer is built, and may refuse it."""
        return self.counter.tokenize(texts, add_special_tokens, check)
