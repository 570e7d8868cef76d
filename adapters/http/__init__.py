"""What every HTTP adapter shares: the upstream client, text inputs, and closing.

``HttpUpstream`` (``adapters.http.upstream``) does pooling, load spreading, failover and
cooldown; ``adapters.http.errors`` normalises upstream error bodies; ``adapters.http.wire``
reads answers strictly. An adapter on top only says which path and body its upstream wants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adapters.http.upstream import HttpUpstream
from adapters.http.wire import read_embeddings, read_rerank
from core.adapters import Adapter, Batching, CallContext, EmbedResult, RerankResult
from core.errors import InvalidRequest
from core.logs import request_id_var
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.adapters import AdapterContext
    from core.config import ModelRoute, UpstreamConfig

__all__ = ["HttpAdapter", "HttpUpstream", "resilience_options"]


def resilience_options(default_encoding: str) -> OptionSchema:
    """The upstream options every HTTP type takes (``adapters.http.upstream`` reads them)."""
    return OptionSchema([
        Option("retries", int, 2, "further attempts on another URL after a connection error or 502/503",
               minimum=0, shapes_output=False),
        Option("retry_backoff_ms", float, 50, "first backoff between attempts, doubled each time", minimum=0,
               shapes_output=False),
        Option("failure_threshold", int, 3, "consecutive failures that take a URL out", minimum=1,
               shapes_output=False),
        Option("cooldown_seconds", float, 10, "how long a failing URL sits out", minimum=0,
               shapes_output=False),
        Option("pool_size", int, 64, "keep-alive connections per URL", minimum=1, shapes_output=False),
        Option("max_in_flight", int, None, "calls in flight per model (default pool_size); more wait in its queue",
               minimum=1, shapes_output=False),
        Option("max_response_mb", float, 64, "a larger answer is a 502", minimum=0.001,
               shapes_output=False),
        Option("encoding_format", str, default_encoding, "how embeddings are asked for",
               choices=("base64", "float"), changes_space=False),  # one float32 vector either way
    ])


class HttpAdapter(Adapter):
    type_name: ClassVar[str] = "http"
    upstream_options: ClassVar[OptionSchema] = resilience_options("float")
    reports_usage: ClassVar[bool] = True  # OpenAI/Cohere-shaped answers carry usage.prompt_tokens

    @classmethod
    def validate_route(cls, route: ModelRoute) -> None:
        if not route.upstream.urls:
            raise ValueError(f"upstream type {route.upstream.type!r} needs 'url' or 'urls'")

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext, *,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        super().__init__(upstream, context)
        self.encoding = str(self.config["encoding_format"])
        self.http = HttpUpstream(upstream, self.config, context, adapter=self.type_name, headers=headers,
                                 secrets=secrets)

    def batching(self, route: ModelRoute) -> Batching:
        """Each request is one call; ``max_in_flight`` (default ``pool_size``) at once per model."""
        return Batching(max_in_flight=int(self.config["max_in_flight"] or self.config["pool_size"]))

    def post(self, path: str, payload: Any, route: ModelRoute, call: CallContext) -> Awaitable[Any]:
        """The upstream's parsed JSON answer to ``payload`` (to await: the call itself is the upstream's)."""
        request_id = call.request_id if call.request_id is not None else request_id_var.get()
        return self.http.post_json(path, payload, alias=route.alias, request_id=request_id)

    async def embed_at(self, path: str, route: ModelRoute, items: list[Any], call: CallContext) -> EmbedResult:
        """POST an OpenAI embeddings body to ``path``; read one vector per item, strictly."""
        answer = await self.post(path, {"model": route.served_name, "input": items,
                                        "encoding_format": self.encoding}, route, call)
        vectors, tokens = read_embeddings(answer, len(items), route.alias)
        return EmbedResult(vectors=vectors, prompt_tokens=tokens)

    async def rerank_at(self, path: str, route: ModelRoute, query: str, documents: Sequence[str],
                        call: CallContext, **extra: Any) -> RerankResult:
        """POST a Cohere-style rerank body to ``path``; read one score per document, strictly."""
        answer = await self.post(path, {"model": route.served_name, "query": query,
                                        "documents": list(documents), **extra}, route, call)
        scores, tokens = read_rerank(answer, len(documents), route.alias)
        return RerankResult(scores=scores, prompt_tokens=tokens)

    @staticmethod
    def texts(route: ModelRoute, inputs: Sequence[Any], call: CallContext) -> list[str]:
        """Inputs as text: token-id inputs are decoded with the route's tokenizer."""
        items = list(inputs)
        if not items or isinstance(items[0], str):
            return items
        counter = call.tokenizer
        if counter is None:
            raise InvalidRequest(f"The model '{route.alias}' does not accept token-id input", param="input")
        return counter.decode_inputs(items)

    async def close(self) -> None:
        await self.http.close()
