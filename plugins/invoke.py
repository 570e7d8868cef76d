"""Stage ``adapter``: call the route's adapter and build the OpenAI / Cohere-shaped response."""

from __future__ import annotations

import asyncio

from core import hookimpl
from core.coalescing import FLAG as COALESCE, EmbedCoalescer
from core.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from core.flow import Flow
from core.protocol import embeddings_body, rerank_body, shape_vectors
from core.tokenization import count_request


class InvokeStage:
    name = "adapter"

    def __init__(self, default_timeout_s: float) -> None:
        self.default_timeout_s = default_timeout_s
        self.coalescer = EmbedCoalescer()

    async def __call__(self, flow: Flow) -> None:
        route, adapter, req = flow.route, flow.adapter, flow.request
        timeout = route.upstream.timeout_s or self.default_timeout_s
        try:
            async with asyncio.timeout(timeout):
                if flow.kind == "embeddings":
                    if flow.snapshot.flag(COALESCE) and self.coalescer.eligible(route, req.inputs):
                        result = await self.coalescer.embed(adapter, route, req.inputs, flow)
                    else:
                        result = await adapter.embed(route, req.inputs, flow)
                else:
                    result = await adapter.rerank(route, req.query, req.documents, flow)
        except TimeoutError:
            raise UpstreamTimeout(f"The upstream for '{route.alias}' did not answer within {timeout:g} s") from None
        tokens = flow.prompt_tokens if flow.prompt_tokens is not None else result.prompt_tokens
        if tokens is None:  # the upstream left usage out: count with the route's tokenizer
            tokens = sum(count_request(flow.kind, req, flow.snapshot.counters[route.alias]))
        if flow.kind == "embeddings":
            vectors = result.vectors
            if vectors.ndim != 2 or vectors.shape[0] != len(req.inputs):
                raise UpstreamError(f"The upstream for '{route.alias}' returned {vectors.shape[0]} vectors "
                                    f"for {len(req.inputs)} inputs")
            if req.dimensions is not None and req.dimensions > vectors.shape[1]:
                raise InvalidRequest(f"'dimensions' is {req.dimensions}, but '{route.alias}' has "
                                     f"{vectors.shape[1]}", param="dimensions")
            flow.response = embeddings_body(route.alias, shape_vectors(vectors, req.dimensions),
                                            req.encoding_format, tokens)
        else:
            if len(result.scores) != len(req.documents):
                raise UpstreamError(f"The upstream for '{route.alias}' returned {len(result.scores)} scores "
                                    f"for {len(req.documents)} documents")
            top_n = req.top_n
            if route.max_top_k is not None:
                top_n = min(top_n or route.max_top_k, route.max_top_k)
            flow.response = rerank_body(route.alias, req, result.scores, top_n, tokens)


@hookimpl
def register_stages(register, settings):
    register(InvokeStage(settings.request_timeout_s))
