"""The internal request types. Each carries its own behaviour: how it is counted, cut, checked
against a route, sent to an adapter and turned into a response body, so a stage never asks
which kind it holds and a new kind lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.errors import InvalidRequest, TokenLimitExceeded, UpstreamError
from core.responses import embeddings_body, rerank_body, shape_vectors

if TYPE_CHECKING:
    from core.adapters import Adapter, CallContext, EmbedResult, RerankResult
    from core.coalescing import EmbedCoalescer
    from core.config import ModelRoute
    from core.tokenization import TokenCounter

EmbeddingInput = list[str] | list[list[int]]


@dataclass(slots=True)
class EmbeddingsRequest:
    kind: ClassVar[str] = "embeddings"
    param: ClassVar[str] = "input"  # the field limits and errors point at

    model: str
    inputs: EmbeddingInput
    is_tokens: bool
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return self.inputs if not self.is_tokens else []  # type: ignore[return-value]

    @property
    def item_count(self) -> int:
        return len(self.inputs)

    def chars(self) -> int:
        return sum(len(item) for item in self.inputs)

    def count(self, counter: TokenCounter) -> list[int]:
        """Tokens per input, as the model sees them."""
        return [len(ids) for ids in self.inputs] if self.is_tokens else counter.count(self.texts)

    def truncate(self, i: int, counter: TokenCounter, limit: int) -> int:
        """Cut input ``i`` in place to ``limit`` tokens; return its new count."""
        items: list[Any] = self.inputs
        if self.is_tokens:
            items[i] = items[i][:limit]
            return len(items[i])
        items[i] = counter.truncate(items[i], limit)
        return counter.count([items[i]])[0]

    def check_route(self, route: ModelRoute) -> None:
        if self.dimensions is not None and not route.allow_dimensions:
            raise InvalidRequest(f"The model '{route.alias}' does not support 'dimensions'", param="dimensions")

    async def call(self, adapter: Adapter, route: ModelRoute, context: CallContext,
                   coalescer: EmbedCoalescer | None = None) -> EmbedResult:
        if coalescer is not None and coalescer.eligible(route, self.inputs):
            return await coalescer.embed(adapter, route, self.inputs, context)
        return await adapter.embed(route, self.inputs, context)

    def respond(self, route: ModelRoute, result: EmbedResult, tokens: int) -> dict[str, Any]:
        vectors = result.vectors
        if vectors.ndim != 2 or vectors.shape[0] != len(self.inputs):
            raise UpstreamError(f"The upstream for '{route.alias}' returned {vectors.shape[0]} vectors "
                                f"for {len(self.inputs)} inputs")
        if self.dimensions is not None and self.dimensions > vectors.shape[1]:
            raise InvalidRequest(f"'dimensions' is {self.dimensions}, but '{route.alias}' has "
                                 f"{vectors.shape[1]}", param="dimensions")
        return embeddings_body(route.alias, shape_vectors(vectors, self.dimensions), self.encoding_format, tokens)


@dataclass(slots=True)
class RerankRequest:
    kind: ClassVar[str] = "rerank"
    param: ClassVar[str] = "documents"
    is_tokens: ClassVar[bool] = False

    model: str
    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool = False

    @property
    def texts(self) -> list[str]:
        return self.documents

    @property
    def item_count(self) -> int:
        return len(self.documents)

    def chars(self) -> int:
        return len(self.query) + sum(len(d) for d in self.documents)

    def count(self, counter: TokenCounter) -> list[int]:
        """Tokens per (query, document) pair, as the cross-encoder sees them."""
        return counter.count_query_documents(self.query, self.documents)

    def truncate(self, i: int, counter: TokenCounter, limit: int) -> int:
        """Cut document ``i`` in place so that its pair with the query fits ``limit``."""
        doc = self.documents[i]
        pair = counter.count_pairs([(self.query, doc)])[0]
        overhead = pair - len(counter.encode([doc])[0])  # the query and the special tokens
        if overhead >= limit:
            raise TokenLimitExceeded(f"The query alone has {overhead} tokens with the pair's special tokens; "
                                     f"the limit per document is {limit} (ROUTER_DOCUMENT_TOKEN_LIMIT)",
                                     param="query", code="document_token_limit_exceeded")
        self.documents[i] = counter.truncate_plain(doc, limit - overhead)
        return counter.count_pairs([(self.query, self.documents[i])])[0]

    def check_route(self, route: ModelRoute) -> None:
        return None

    async def call(self, adapter: Adapter, route: ModelRoute, context: CallContext,
                   coalescer: EmbedCoalescer | None = None) -> RerankResult:
        return await adapter.rerank(route, self.query, self.documents, context)

    def respond(self, route: ModelRoute, result: RerankResult, tokens: int) -> dict[str, Any]:
        if len(result.scores) != len(self.documents):
            raise UpstreamError(f"The upstream for '{route.alias}' returned {len(result.scores)} scores "
                                f"for {len(self.documents)} documents")
        top_n = self.top_n
        if route.max_top_k is not None:
            top_n = min(top_n or route.max_top_k, route.max_top_k)
        return rerank_body(route.alias, self, result.scores, top_n, tokens)


ModelRequest = EmbeddingsRequest | RerankRequest
