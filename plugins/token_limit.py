"""Stage ``token_limit``: tokenize once, with the target model's tokenizer, and apply the limits.

The counts land on ``flow.token_counts`` and serve the limits, usage and the token budget.
When none of those needs them and the upstream reports usage itself (``reports_usage``), the
request is not tokenized here at all: the upstream's count, made with the model's own
tokenizer, is the usage.
``ROUTER_DOCUMENT_TOKEN_LIMIT`` caps each input (or rerank document) and
``ROUTER_SAFE_REQUEST_TOKEN_LIMIT`` the whole request; over either is 413 naming the limit, the
count and the item. With the ``truncate_inputs`` flag an input over the document limit is cut
to it instead, and usage reports the cut count; the request limit still applies afterwards.
"""

from __future__ import annotations

import asyncio

from core import hookimpl
from core.coalescing import FLAG as COALESCE
from core.errors import TokenLimitExceeded
from core.flow import Flow
from core.tokenization import TokenCounter, count_request


_INLINE_CHARS = 16384  # below this, tokenizing inline is cheaper than a thread hop


def _chars(flow: Flow) -> int:
    req = flow.request
    if flow.kind == "embeddings":
        return sum(len(t) for t in req.inputs)
    return len(req.query) + sum(len(d) for d in req.documents)


class TokenLimitStage:
    name = "token_limit"

    def __init__(self, request_limit: int | None = None, document_limit: int | None = None) -> None:
        self.request_limit = request_limit
        self.document_limit = document_limit

    async def __call__(self, flow: Flow) -> None:
        route = flow.snapshot.routes.get(flow.request.model)
        if route is None or not route.enabled or route.kind != flow.kind:
            return  # the route stage answers 404 or 400: nothing to count
        counter = flow.snapshot.counters[route.alias]
        if not self._needs_counts(flow):
            return  # the upstream reports usage and nothing here limits or charges tokens
        req = flow.request
        tokens_given = flow.kind == "embeddings" and req.is_tokens
        if tokens_given or _chars(flow) < _INLINE_CHARS:
            counts = count_request(flow.kind, req, counter)
        else:  # a big request: tokenize off the event loop (the tokenizer releases the GIL)
            counts = await asyncio.to_thread(count_request, flow.kind, req, counter)
        flow.token_counts = counts
        param = "input" if flow.kind == "embeddings" else "documents"
        limit = self.document_limit
        if limit is not None:
            for i, count in enumerate(counts):
                if count <= limit:
                    continue
                if not flow.snapshot.flag("truncate_inputs"):
                    raise TokenLimitExceeded(
                        f"'{param}[{i}]' has {count} tokens; the limit per item is {limit} "
                        "(ROUTER_DOCUMENT_TOKEN_LIMIT)", param=param, code="document_token_limit_exceeded")
                counts[i] = self._truncate(flow, counter, i, limit, tokens_given)
        if self.request_limit is not None and sum(counts) > self.request_limit:
            running = 0
            for i, count in enumerate(counts):
                running += count
                if running > self.request_limit:
                    break
            raise TokenLimitExceeded(
                f"The request has {sum(counts)} tokens; the limit per request is {self.request_limit} "
                f"(ROUTER_SAFE_REQUEST_TOKEN_LIMIT), passed at '{param}[{i}]'", param=param,
                code="request_token_limit_exceeded")

    def _needs_counts(self, flow: Flow) -> bool:
        if self.document_limit is not None or self.request_limit is not None or flow.needs_token_counts:
            return True
        if flow.snapshot.flag(COALESCE):  # a merged upstream call reports one total for all
            return True
        return not getattr(flow.snapshot.adapters.get(flow.request.model), "reports_usage", False)

    @staticmethod
    def _truncate(flow: Flow, counter: TokenCounter, i: int, limit: int, tokens_given: bool) -> int:
        """Cut item ``i`` in place to ``limit`` tokens; return its new count."""
        req = flow.request
        if tokens_given:
            req.inputs[i] = req.inputs[i][:limit]
            return len(req.inputs[i])
        if flow.kind == "embeddings":
            req.inputs[i] = counter.truncate(req.inputs[i], limit)
            return counter.count([req.inputs[i]])[0]
        doc = req.documents[i]
        pair = counter.count_pairs([(req.query, doc)])[0]
        overhead = pair - len(counter.encode([doc])[0])  # the query and the special tokens
        if overhead >= limit:
            raise TokenLimitExceeded(f"The query alone has {overhead} tokens with the pair's special tokens; "
                                     f"the limit per document is {limit} (ROUTER_DOCUMENT_TOKEN_LIMIT)",
                                     param="query", code="document_token_limit_exceeded")
        req.documents[i] = counter.truncate_plain(doc, limit - overhead)
        return counter.count_pairs([(req.query, req.documents[i])])[0]


@hookimpl
def register_stages(register, settings):
    register(TokenLimitStage(settings.safe_request_token_limit, settings.document_token_limit))
