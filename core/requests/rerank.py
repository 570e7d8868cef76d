"""Rerank requests: counted per (query, document) pair, long documents read in windows, sent,
and ranked (a document scores as its best window)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from core.config.caps import DEFAULT_CAPS, InputCaps
from core.errors import InvalidRequest, TokenLimitExceeded, UpstreamError
from core.kinds import RERANK, Kind
from core.requests.common import RerankOutcome, over_limit, rank, usage
from core.requests.truncation import BY_NAME, CUT_END, REFUSE, WINDOWS, OverLimit
from core.variant import DEFAULT_VARIANT, Variant

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.served import ModelCall, ServedModel
    from core.tokenization import TokenCounter


@dataclass(slots=True)
class RerankRequest:
    name: ClassVar[str] = "rerank"
    kind: ClassVar[Kind] = RERANK
    param: ClassVar[str] = "documents"
    is_tokens: ClassVar[bool] = False

    model: str | None
    query: str
    documents: list[str]
    top_n: int | None = None
    return_documents: bool | None = False  # None: the route's default (its return_documents option)
    truncation: OverLimit | None = None  # REFUSE: the request forbids reading less than everything
    max_tokens_per_doc: int | None = None  # each document is cut to this many tokens (Cohere v2)
    pair_tokens: int | None = None  # each (query, document) pair is read to this many tokens (vLLM)
    # Set when long documents were split: the document each scored piece belongs to, and the
    # documents as sent (for return_documents); the document takes its best piece's score.
    piece_of: list[int] | None = None
    originals: list[str] | None = None
    # Set by a dialect whose answer reports something counted per document (Cohere's search
    # units): the router then counts each pair itself, whatever the upstream reports.
    per_document_usage: bool = False
    document_tokens: list[int] | None = None  # each document's pair tokens before it was split
    caps: InputCaps = field(default=DEFAULT_CAPS, kw_only=True, repr=False)  # set by check_caps
    variant: Variant = field(default=DEFAULT_VARIANT, kw_only=True)  # activation (core.variant)
    every_score: bool = field(default=False, kw_only=True)  # one score per document (vLLM's score): never cut
    # The documents the caller sent (a long one read in windows is still one): set by check_caps.
    item_count: int = field(default=0, init=False, repr=False, compare=False)

    READ_AT_MOST: ClassVar[int] = 4096  # tokens read per document unless max_tokens_per_doc says (Cohere's default)

    def check_caps(self, caps: InputCaps) -> None:
        """Refuse (413) a query, documents or pairs over the caps, before anything reads them."""
        self.caps, self.item_count = caps, len(self.documents)
        caps.check("query_chars", len(self.query), "'query'", "characters", "query")
        caps.check("rerank_chars", sum(map(len, self.documents)), f"'{self.param}'", "characters", self.param)
        caps.check("rerank_pairs", len(self.documents), f"'{self.param}'", "documents", self.param)

    def over_limit_policy(self, route: ModelRoute, flag_end: bool) -> OverLimit:
        """A request says only whether it allows reading less than everything (REFUSE if not);
        then the route's truncation, else the flag's (cut the end), else a long document is read
        in overlapping windows and scores as its best one."""
        if self.truncation is REFUSE:
            return REFUSE
        if route.truncation is not None:
            return BY_NAME[route.truncation]
        return CUT_END if flag_end else WINDOWS

    def split_long(self, counter: TokenCounter, limit: int, over: list[int]) -> tuple[list[int], list[int]]:
        """Split the documents in ``over`` into windows that fit ``limit`` with the query (a
        quarter of each window overlapping the next); return the new pair counts and the
        documents read only in part (past ``read_tokens``)."""
        query = len(counter.encode([self.query])[0])
        size = limit - query - counter.pair_specials
        if self.per_document_usage:
            self.document_tokens = self.count(counter)
        if size < 16:
            raise over_limit("query", 0, f"{query} tokens", f"{limit} tokens with a document")
        stride = max(1, size - size // 4)
        pieces: list[str] = []
        owners: list[int] = []
        partly: list[int] = []  # documents longer than what is read of them
        for i, doc in enumerate(self.documents):
            parts, whole = counter.windows(doc, size, stride, self.read_tokens) if i in over else ([doc], True)
            pieces += parts
            self.caps.check("rerank_pairs", len(pieces), f"'{self.param}' read in windows", "pairs or more",
                            self.param)
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
        return (self.truncation is REFUSE or self.max_tokens_per_doc is not None or self.per_document_usage
                or self.pair_tokens is not None)

    def cap_chars(self, limit: int, counter: TokenCounter, policy: OverLimit) -> list[int]:
        # read in windows, a document may be as long as read_tokens, not just one window
        cap = (max(limit, self.read_tokens) if policy is WINDOWS else limit) * counter.max_token_chars
        cut = [i for i, doc in enumerate(self.documents) if len(doc) > cap]
        for i in cut:
            self.documents[i] = policy.cut_text(self.documents[i], cap, self.param, i)
        return cut

    def surely_within(self, limit: int, counter: TokenCounter) -> bool:
        query = len(self.query.encode()) + counter.specials + 1
        return all(query + len(doc.encode()) <= limit for doc in self.documents)

    def truncate_start(self, i: int, counter: TokenCounter, limit: int) -> int:
        raise RuntimeError("a rerank document is cut at its end (its query stays); routing.yaml refuses start")

    def scored_documents(self) -> int:
        return len(self.documents)

    def apply_caps(self, counter: TokenCounter) -> list[int]:
        """Cut each document to ``max_tokens_per_doc`` tokens, and so that its pair with the query
        has at most ``pair_tokens`` (before counting); the ones cut."""
        room = self._room(counter) if self.pair_tokens is not None else None
        caps = [c for c in (self.max_tokens_per_doc, room) if c is not None]
        if not caps:
            return []
        cap = min(caps)
        capped = [counter.truncate_plain(doc, cap) for doc in self.documents]
        cut = [i for i, (a, b) in enumerate(zip(self.documents, capped, strict=True)) if a != b]
        self.documents = capped
        return cut

    def _room(self, counter: TokenCounter) -> int | None:
        """The tokens left to a document in a pair of ``pair_tokens`` (None: no such cap)."""
        if self.pair_tokens is None:
            return None
        query = len(counter.encode([self.query])[0]) + counter.pair_specials
        if query >= self.pair_tokens:
            raise InvalidRequest(f"'truncate_prompt_tokens' is {self.pair_tokens}, but the query takes {query} tokens "
                                 "with the pair's special tokens", param="truncate_prompt_tokens")
        return self.pair_tokens - query

    @property
    def texts(self) -> list[str]:
        return self.documents

    def chars(self) -> int:
        return len(self.query) + sum(map(len, self.documents))

    def at_least(self, counter: TokenCounter) -> list[int] | None:
        """At least how many tokens per pair ``count`` finds, found without tokenizing."""
        return counter.at_least_query_documents(self.query, self.documents)

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
        if self.return_documents is None:
            self.return_documents = route.options.get("return_documents") is True
        if self.every_score and route.max_top_k is not None and len(self.documents) > route.max_top_k:
            raise InvalidRequest(f"The model '{route.alias}' scores at most {route.max_top_k} texts a request "
                                 f"(its max_top_k); this one has {len(self.documents)}", param=self.param)

    def spaces(self, model: ServedModel, width: int | None = None) -> None:
        return None  # scores, not vectors

    async def run(self, model: ServedModel, call: ModelCall, tokens: int | None) -> RerankOutcome:
        """Score on ``model`` and rank; ``tokens`` as counted before the call."""
        result = await model.rerank(self.query, self.documents, call, variant=self.variant)
        scores = result.scores
        alias = model.alias
        if len(scores) != len(self.documents):
            raise UpstreamError(f"The upstream for '{alias}' returned {len(scores)} scores "
                                f"for {len(self.documents)} documents")
        if not all(math.isfinite(s) for s in scores):
            raise UpstreamError(f"The upstream for '{alias}' returned a score that is not a finite number",
                                code="upstream_not_finite")
        top_n = self.top_n
        max_top_k = model.facts.max_top_k
        if max_top_k is not None:
            top_n = min(top_n or max_top_k, max_top_k)
        documents = self.documents
        per_document = self.document_tokens
        if per_document is None and self.piece_of is None and call.token_counts is not None:
            per_document = list(call.token_counts)  # counted before the call: one pair per document
        if self.piece_of is not None and self.originals is not None:  # a document scores as its best piece
            best = [-math.inf] * len(self.originals)
            for owner, score in zip(self.piece_of, scores, strict=True):
                best[owner] = max(best[owner], score)
            scores, documents = best, self.originals
        return RerankOutcome(alias, rank(scores, top_n), documents,
                             usage(tokens, result.prompt_tokens, lambda: self.count(model.counter)),
                             document_tokens=per_document)
