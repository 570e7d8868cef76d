"""What every HTTP adapter shares: the upstream client, text inputs, and closing.

``HttpUpstream`` (``adapters.http.upstream``) does pooling, load spreading, failover and
cooldown; ``adapters.http.errors`` normalises upstream error bodies; ``adapters.http.wire``
reads answers strictly. An adapter on top only says which path and body its upstream wants.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adapters.http.upstream import HttpUpstream
from adapters.http.wire import read_embeddings, read_rerank
from core.adapters import EmbedResult, RerankResult
from core.errors import ConfigError, InvalidRequest
from core.logs import request_id_var

if TYPE_CHECKING:
    from core.adapters import AdapterContext
    from core.config import ModelRoute, UpstreamConfig
    from core.flow import Flow

__all__ = ["HttpAdapter", "HttpUpstream"]


class HttpAdapter:
    type_name: ClassVar[str] = "http"
    default_encoding: ClassVar[str] = "float"  # how embeddings are asked for (option encoding_format)
    reports_usage: ClassVar[bool] = True  # OpenAI/Cohere-shaped answers carry usage.prompt_tokens

    @classmethod
    def validate_options(cls, upstream: "UpstreamConfig") -> None:
        """Check the options every HTTP upstream takes, so check-config catches them (file, line)."""
        if not upstream.urls:
            raise ValueError(f"upstream type {upstream.type!r} needs 'url' or 'urls'")
        opts = upstream.options
        for name, lowest, integer in (("retries", 0, True), ("failure_threshold", 1, True), ("pool_size", 1, True),
                                      ("retry_backoff_ms", 0, False), ("cooldown_seconds", 0, False),
                                      ("max_response_mb", 0.001, False)):
            if name not in opts:
                continue
            value = opts[name]
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < lowest:
                kind = "an integer" if integer else "a number"
                raise ValueError(f"'{name}' must be {kind} >= {lowest}, got {value!r}")
        if opts.get("encoding_format", cls.default_encoding) not in ("base64", "float"):
            raise ValueError("'encoding_format' must be 'base64' or 'float'")

    def __init__(self, upstream: "UpstreamConfig", context: "AdapterContext", *,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        self.upstream = upstream
        self.encoding = str(upstream.options.get("encoding_format", self.default_encoding))
        if self.encoding not in ("base64", "float"):
            raise ConfigError(f"{self.type_name} upstream: 'encoding_format' must be 'base64' or 'float'")
        self.http = HttpUpstream(upstream, context, adapter=self.type_name, headers=headers, secrets=secrets)

    async def post(self, path: str, payload: Any, route: "ModelRoute", flow: "Flow | None") -> Any:
        request_id = flow.request_id if flow is not None else request_id_var.get()
        return await self.http.post_json(path, payload, alias=route.alias, request_id=request_id)

    async def embed_at(self, path: str, route: "ModelRoute", items: list[Any], flow: "Flow | None") -> EmbedResult:
        """POST an OpenAI embeddings body to ``path``; read one vector per item, strictly."""
        answer = await self.post(path, {"model": route.served_name, "input": items,
                                        "encoding_format": self.encoding}, route, flow)
        vectors, tokens = read_embeddings(answer, len(items), route.alias)
        return EmbedResult(vectors=vectors, prompt_tokens=tokens)

    async def rerank_at(self, path: str, route: "ModelRoute", query: str, documents: Sequence[str],
                        flow: "Flow | None", **extra: Any) -> RerankResult:
        """POST a Cohere-style rerank body to ``path``; read one score per document, strictly."""
        answer = await self.post(path, {"model": route.served_name, "query": query,
                                        "documents": list(documents), **extra}, route, flow)
        scores, tokens = read_rerank(answer, len(documents), route.alias)
        return RerankResult(scores=scores, prompt_tokens=tokens)

    @staticmethod
    def texts(route: "ModelRoute", inputs: Sequence[Any], flow: "Flow | None") -> list[str]:
        """Inputs as text: token-id inputs are decoded with the route's tokenizer."""
        items = list(inputs)
        if not items or isinstance(items[0], str):
            return items
        counter = flow.snapshot.counters.get(route.alias) if flow is not None else None
        if counter is None:
            raise InvalidRequest(f"The model '{route.alias}' does not accept token-id input", param="input")
        return counter.decode_inputs(items)

    async def close(self) -> None:
        await self.http.close()
