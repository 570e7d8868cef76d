"""The internal request types. Each carries its own behaviour: how it is counted, cut, checked
against a route, sent to an adapter and turned into an outcome that a dialect renders, so a
stage never asks which kind it holds and a new kind lives in one place.

Every wire format (``core.dialects``) parses into these and renders their outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.config.routing import CL100K
from core.errors import InvalidRequest, TokenLimitExceeded, UpstreamError
from core.tokenization import decode_cl100k
from core.vectors import shape_vectors

if TYPE_CHECKING:
    from core.adapters import Adapter, CallContext, EmbedResult, RerankResult
    from core.coalescing import EmbedCoalescer
    from core.config import ModelRoute
    from core.tokenization import TokenCounter

EmbeddingInput = list[str] | list[list[int]]


def rank(scores: Sequence[float], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score) best first, cut to ``top_n``; ties keep document order."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:top_n]
    return [(i, float(scores[i])) for i in order]


def over_limit(param: str, i: int, size: str, limit: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}[{i}]' has {size}; the model reads at most {limit} and truncation is not "
                          "allowed (the route's truncation, or the request's own setting)", param=param,
                          code="context_length_exceeded")

#: What a request says about an input over the model's limit: "end" (cutting at the end is
#: allowed), "error" (refuse it). None: the dialect says nothing, the model's own behaviour.
Truncation = str | None


@dataclass(slots=True)
class EmbeddingsOutcome:
    """What the model gave, shaped as asked (``dimensions``), for a dialect to render."""

    model: str
    vectors: np.ndarray  # (n, d) float32
    tokens: int


@dataclass(slots=True)
class RerankOutcome:
    model: str
    ranked: list[tuple[int, float]]  # (document index, score), best first, cut to top_n
    documents: list[str]
    tokens: int


@dataclass(slots=True)
class EmbeddingsRequest:
    kind: ClassVar[str] = "embeddings"
    param: ClassVar[str] = "input"  # the field limits and errors point at

    model: str | None  # None: the routing's default model for the kind
    inputs: EmbeddingInput
    is_tokens: bool
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
    input_type: str | None = None  # query, document, classification, clustering: selects the route's prompt
    truncation: Truncation = None
    wire: dict[str, Any] = field(default_factory=dict)  # the dialect's output choices, read by its render

    def truncation_mode(self, route: ModelRoute, flag_end: bool) -> str:
        """Over the model's limit: the request's choice, else the route's, else the truncate_inputs
        flag's (end), else refuse."""
        return self.truncation or route.truncation or ("end" if flag_end else "error")

    def split_long(self, counter: TokenCounter, limit: int, over: list[int]) -> tuple[list[int], list[int]]:
        raise RuntimeError("embedding inputs are cut or refused, not split")

    def apply_caps(self, counter: TokenCounter) -> list[int]:
        """Per-input token caps the caller asked for: none in the embedding dialects."""
        return []

    def cap_chars(self, limit: int, counter: TokenCounter, mode: str) -> list[int]:
        """Inputs over ``limit`` × the longest token's characters are over the model's allowance
        whatever they tokenize to (a 15 MB 'word' is one [UNK]): refuse them, or cut them there
        before tokenizing."""
        cap = limit * counter.max_token_chars
        if self.is_tokens:
            return []
        items: list[Any] = self.inputs
        cut = [i for i, text in enumerate(items) if len(text) > cap]
        for i in cut:
            if mode == "error":
                raise over_limit(self.param, i, f"{len(items[i])} characters", f"{cap} characters")
            items[i] = items[i][:cap] if mode == "end" else items[i][-cap:]
        return cut

    def surely_within(self, limit: int, counter: TokenCounter) -> bool:
        """True when no input can reach ``limit`` tokens (a token covers at least a byte)."""
        if self.is_tokens:
            return all(len(ids) <= limit for ids in self.inputs)
        return all(len(text.encode()) + counter.specials <= limit for text in self.texts)

    def cut(self, i: int, counter: TokenCounter, limit: int, mode: str) -> int:
        """Cut input ``i`` to ``limit`` tokens at its end or its start; return its new count."""
        if mode == "end":
            return self.truncate(i, counter, limit)
        items: list[Any] = self.inputs
        if self.is_tokens:
            items[i] = items[i][-limit:]
            return len(items[i])
        items[i] = counter.truncate_start(items[i], limit)
        return counter.count([items[i]])[0]

    @property
    def needs_counts(self) -> bool:
        """The request itself needs its tokens counted (a limit it set)."""
        return self.truncation == "error"

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
        if self.is_tokens and route.token_ids == CL100K:
            # What an OpenAI client means by token ids: its own cl100k_base encoding of a text.
            self.inputs, self.is_tokens = decode_cl100k(self.inputs), False  # type: ignore[arg-type]
        self._apply_prompt(route)

    def _apply_prompt(self, route: ModelRoute) -> None:
        """Put the route's prompt for ``input_type`` before every input (so it is counted too)."""
        prompts = route.prompts
        if self.input_type is None and prompts is not None:
            self.input_type = prompts.get("default")  # None: no prompt, as before the route had prompts
        if self.input_type is None:
            return
        if prompts is None or self.input_type not in prompts:
            accepted = (", ".join(sorted(set(prompts) - {"default"})) if prompts
                        else "none: the route declares no prompts")
            raise InvalidRequest(f"The model '{route.alias}' does not take input type {self.input_type!r} "
                                 f"(it takes: {accepted})", param="input_type", code="unsupported_input_type")
        prefix = prompts[self.input_type]
        if not prefix:
            return
        if self.is_tokens:
            raise InvalidRequest(f"The model '{route.alias}' puts a prompt before {self.input_type} inputs; "
                                 "send text, not token ids", param="input")
        self.inputs = [prefix + text for text in self.texts]

    async def call(self, adapter: Adapter, route: ModelRoute, context: CallContext,
                   coalescer: EmbedCoalescer | None = None) -> EmbedResult:
        if coalescer is not None and coalescer.eligible(route, self.inputs):
            return await coalescer.embed(adapter, route, self.inputs, context)
        return await adapter.embed(route, self.inputs, context)

    def respond(self, route: ModelRoute, result: EmbedResult, tokens: int,
                check: Callable[[np.ndarray], None] | None = None) -> EmbeddingsOutcome:
        """The outcome; ``check`` sees the vectors first (the route's width, finite values)."""
        vectors = result.vectors
        if vectors.ndim != 2 or vectors.shape[0] != len(self.inputs):
            raise UpstreamError(f"The upstream for '{route.alias}' returned {vectors.shape[0]} vectors "
                                f"for {len(self.inputs)} inputs")
        if check is not None:
            check(vectors)
        if self.dimensions is not None and self.dimensions > vectors.shape[1]:
            raise InvalidRequest(f"'dimensions' is {self.dimensions}, but '{route.alias}' has "
                                 f"{vectors.shape[1]}", param="dimensions")
        return EmbeddingsOutcome(route.alias, shape_vectors(vectors, self.dimensions), tokens)


@dataclass(slots=True)
class RerankRequest:
    kind: ClassVar[str] = "rerank"
    param: ClassVar[str] = "documents"
    is_tokens: ClassVar[bool] = False

    model: str | None
    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool = False
    truncation: Truncation = None
    max_tokens_per_doc: int | None = None  # each document is cut to this many tokens (Cohere v2)
    wire: dict[str, Any] = field(default_factory=dict)
    # Set when long documents were split: the document each scored piece belongs to, and the
    # documents as sent (for return_documents); the document takes its best piece's score.
    piece_of: list[int] | None = None
    originals: list[str] | None = None

    READ_AT_MOST: ClassVar[int] = 4096  # tokens read per document unless max_tokens_per_doc says (Cohere's default)

    def truncation_mode(self, route: ModelRoute, flag_end: bool) -> str:
        """A request says only whether it allows reading less than everything (``error`` if not);
        then the route's truncation, else the flag's (end), else a long document is read in
        overlapping windows (``chunk``) and scores as its best one."""
        if self.truncation == "error":
            return "error"
        return route.truncation or ("end" if flag_end else "chunk")

    def split_long(self, counter: TokenCounter, limit: int, over: list[int]) -> tuple[list[int], list[int]]:
        """Split the documents in ``over`` into windows that fit ``limit`` with the query (a
        quarter of each window overlapping the next); return the new pair counts and the
        documents read only in part (past ``read_tokens``)."""
        query = len(counter.encode([self.query])[0])
        size = limit - query - counter.pair_specials
        if size < 16:
            raise over_limit("query", 0, f"{query} tokens", f"{limit} tokens with a document")
        stride = max(1, size - size // 4)
        pieces: list[str] = []
        owners: list[int] = []
        partly: list[int] = []  # documents longer than what is read of them
        for i, doc in enumerate(self.documents):
            parts, whole = counter.windows(doc, size, stride, self.read_tokens) if i in over else ([doc], True)
            pieces += parts
            owners += [i] * len(parts)
            if not whole:
                partly.append(i)
        self.originals, self.documents, self.piece_of = self.documents, pieces, owners
        return self.count(counter), partly

    @property
    def read_tokens(self) -> int:
        """The most tokens read of one document, windows and all."""
        return self.max_tokens_per_doc or self.READ_AT_MOST

    @property
    def needs_counts(self) -> bool:
        return self.truncation == "error" or self.max_tokens_per_doc is not None

    def cap_chars(self, limit: int, counter: TokenCounter, mode: str) -> list[int]:
        # read in windows, a document may be as long as read_tokens, not just one window
        cap = (max(limit, self.read_tokens) if mode == "chunk" else limit) * counter.max_token_chars
        cut = [i for i, doc in enumerate(self.documents) if len(doc) > cap]
        for i in cut:
            if mode == "error":
                raise over_limit(self.param, i, f"{len(self.documents[i])} characters", f"{cap} characters")
            self.documents[i] = self.documents[i][:cap]
        return cut

    def surely_within(self, limit: int, counter: TokenCounter) -> bool:
        query = len(self.query.encode()) + counter.specials + 1
        return all(query + len(doc.encode()) <= limit for doc in self.documents)

    def cut(self, i: int, counter: TokenCounter, limit: int, mode: str) -> int:
        return self.truncate(i, counter, limit)  # rerank cuts the document's end; its query stays

    def scored_documents(self) -> int:
        return len(self.documents)

    def apply_caps(self, counter: TokenCounter) -> list[int]:
        """Cut each document to ``max_tokens_per_doc`` tokens (before counting); the ones cut."""
        cap = self.max_tokens_per_doc
        if cap is None:
            return []
        capped = [counter.truncate_plain(doc, cap) for doc in self.documents]
        cut = [i for i, (a, b) in enumerate(zip(self.documents, capped, strict=True)) if a != b]
        self.documents = capped
        return cut

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

    def respond(self, route: ModelRoute, result: RerankResult, tokens: int,
                check: Callable[[np.ndarray], None] | None = None) -> RerankOutcome:
        scores = result.scores
        if len(scores) != len(self.documents):
            raise UpstreamError(f"The upstream for '{route.alias}' returned {len(scores)} scores "
                                f"for {len(self.documents)} documents")
        if not all(math.isfinite(s) for s in scores):
            raise UpstreamError(f"The upstream for '{route.alias}' returned a score that is not a finite number",
                                code="upstream_not_finite")
        top_n = self.top_n
        if route.max_top_k is not None:
            top_n = min(top_n or route.max_top_k, route.max_top_k)
        documents = self.documents
        if self.piece_of is not None and self.originals is not None:  # a document scores as its best piece
            best = [-math.inf] * len(self.originals)
            for owner, score in zip(self.piece_of, scores, strict=True):
                best[owner] = max(best[owner], score)
            scores, documents = best, self.originals
        return RerankOutcome(route.alias, rank(scores, top_n), documents, tokens)


@dataclass(slots=True)
class TokenizeResult:
    tokens_by_input: list[list[dict[str, Any]]]
    prompt_tokens: int | None = None


@dataclass(slots=True)
class TokenizeOutcome:
    model: str
    tokens_by_input: list[list[dict[str, Any]]]
    tokens: int


@dataclass(slots=True)
class TokenizeRequest(EmbeddingsRequest):
    """Tokenize with the embedding model's own tokenizer: routed, limited and counted like an
    embeddings request; answered by the route's token counter, not the adapter."""

    add_special_tokens: bool = True

    def truncation_mode(self, route: ModelRoute, flag_end: bool) -> str:
        return "none"  # tokenizing reads everything: no model limit applies

    async def call(self, adapter: Adapter, route: ModelRoute, context: CallContext,  # type: ignore[override]
                   coalescer: EmbedCoalescer | None = None) -> TokenizeResult:
        if context.tokenizer is None:
            raise InvalidRequest(f"The model '{route.alias}' has no tokenizer here", param="model")
        return TokenizeResult(context.tokenizer.tokenize(self.texts, self.add_special_tokens))

    def respond(self, route: ModelRoute, result: TokenizeResult, tokens: int,  # type: ignore[override]
                check: Callable[[np.ndarray], None] | None = None) -> TokenizeOutcome:
        return TokenizeOutcome(route.alias, result.tokens_by_input, tokens)


ModelRequest = EmbeddingsRequest | RerankRequest
Outcome = EmbeddingsOutcome | RerankOutcome | TokenizeOutcome
