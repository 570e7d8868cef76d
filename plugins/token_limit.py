"""Stage ``token_limit``: tokenize once, with the chosen model's tokenizer, and apply the limits.

It runs after ``route``: the model is chosen first, so a request refused there (404, 403) is
never tokenized. The counts land on ``flow.token_counts`` and serve the limits, usage and the
token budget. When none of those needs them and the upstream reports usage itself
(``reports_usage``), the request is not tokenized here at all: the upstream's count, made with
the model's own tokenizer, is the usage.
``ROUTER_DOCUMENT_TOKEN_LIMIT`` caps each input (or rerank document) and
``ROUTER_SAFE_REQUEST_TOKEN_LIMIT`` the whole request; over either is 413 naming the limit, the
count and the item. With the ``truncate_inputs`` flag an input over the document limit is cut
to it instead, and usage reports the cut count; the request limit still applies afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from core import hookimpl
from core.coalescing import FLAG as COALESCE
from core.errors import InvalidRequest, TokenLimitExceeded
from core.flow import Flow

if TYPE_CHECKING:
    from core.config import Settings

_INLINE_CHARS = 16384  # below this, tokenizing inline is cheaper than a thread hop


class TokenLimitStage:
    name = "token_limit"

    def __init__(self, request_limit: int | None = None, document_limit: int | None = None) -> None:
        self.request_limit = request_limit
        self.document_limit = document_limit

    async def __call__(self, flow: Flow) -> None:
        req = flow.parsed()
        if not self._needs_counts(flow):
            return  # the upstream reports usage and nothing here limits or charges tokens
        route, adapter = flow.routed()
        counter = flow.snapshot.counters[route.alias]
        req.apply_caps(counter)
        if req.is_tokens or req.chars() < _INLINE_CHARS:
            counts = req.count(counter)
        else:  # a big request: tokenize off the event loop (the tokenizer releases the GIL)
            counts = await asyncio.to_thread(req.count, counter)
        flow.token_counts = counts
        param = req.param
        if req.truncation == "error":  # the caller forbade cutting: an input over the model's limit is refused
            self._refuse_over_model_limit(route.alias, route.max_input_tokens or
                                          adapter.describe(route).get("max_input_tokens"), counts, param)
        limit = self.document_limit
        if limit is not None:
            for i, count in enumerate(counts):
                if count <= limit:
                    continue
                if not flow.snapshot.flag("truncate_inputs"):
                    raise TokenLimitExceeded(
                        f"'{param}[{i}]' has {count} tokens; the limit per item is {limit} "
                        "(ROUTER_DOCUMENT_TOKEN_LIMIT)", param=param, code="document_token_limit_exceeded")
                counts[i] = req.truncate(i, counter, limit)
        if self.request_limit is not None and sum(counts) > self.request_limit:
            passed = next(i for i, total in enumerate(itertools.accumulate(counts)) if total > self.request_limit)
            raise TokenLimitExceeded(
                f"The request has {sum(counts)} tokens; the limit per request is {self.request_limit} "
                f"(ROUTER_SAFE_REQUEST_TOKEN_LIMIT), passed at '{param}[{passed}]'", param=param,
                code="request_token_limit_exceeded")

    @staticmethod
    def _refuse_over_model_limit(alias: str, limit: int | None, counts: list[int], param: str) -> None:
        if limit is None:
            raise InvalidRequest(f"The request forbids truncation, but the input limit of '{alias}' is not known "
                                 "here (the route sets no max_input_tokens); allow truncation or ask the operator",
                                 param="truncate", code="unknown_input_limit")
        for i, count in enumerate(counts):
            if count > limit:
                raise InvalidRequest(f"'{param}[{i}]' has {count} tokens; '{alias}' reads at most {limit} and the "
                                     "request forbids truncation", param=param, code="context_length_exceeded")

    def _needs_counts(self, flow: Flow) -> bool:
        if self.document_limit is not None or self.request_limit is not None or flow.needs_token_counts:
            return True
        if flow.parsed().needs_counts:
            return True
        if flow.snapshot.flag(COALESCE):  # a merged upstream call reports one total for all
            return True
        return flow.adapter is None or not flow.adapter.reports_usage


@hookimpl
def register_stages(register, settings: Settings) -> None:
    register(TokenLimitStage(settings.safe_request_token_limit, settings.document_token_limit))
