"""Stage ``token_limit``: decide what happens to inputs over the model's limit, then count once,
with the chosen model's tokenizer, and apply the limits.

It runs after ``route``: a request refused there (404, 403) is never tokenized. Nor is a large
request that the model surely could not finish before its deadline: its tokens are bounded from
below without tokenizing (``TokenCounter.at_least``) and, if even that many are too many for the
idle model, it gets its 413 ``request_too_large_for_deadline`` at once.

**The model's limit.** Each route's ``max_input_tokens`` (or what the loaded model says). Over it,
the request's own choice wins (Cohere ``truncate``, Voyage ``truncation``, TEI ``truncate``), else
the route's ``truncation``, else the ``truncate_inputs`` flag (``end``), else the kind's default:
``error`` for embeddings (a 400 ``context_length_exceeded`` naming the item, its count and the
limit); for rerank a long document is read whole in overlapping windows of the model's size and
takes its best window's score (``X-Chunked-Documents``; Cohere's ``max_tokens_per_doc``, default
4096, caps what is read). Whatever is cut is said in ``X-Truncated-Inputs`` (the item indexes).
Inputs are capped in characters first (the limit × the tokenizer's longest token, 100 for
WordPiece), so no input costs more than its allowance:
a 15 MB word is refused or cut before it is tokenized, never counted as one [UNK].

**The ROUTER_* limits.** ``ROUTER_DOCUMENT_TOKEN_LIMIT`` caps each input (or rerank document) and
``ROUTER_SAFE_REQUEST_TOKEN_LIMIT`` the whole request; over either is 413 naming the limit, the
count and the item. With the ``truncate_inputs`` flag an input over the document limit is cut to
it instead. The counts land on ``flow.token_counts`` (their sum on ``flow.prompt_tokens``) and
serve usage and the token budget. When nothing needs them and the upstream reports usage itself,
nothing is tokenized here at all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from core import hookimpl
from core.chain import SETTLED
from core.config.sections import EnvOption, SettingsSection
from core.errors import InvalidRequest, TokenLimitExceeded
from core.flow import Flow
from core.offload import off_loop
from core.requests import REFUSE

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from core.config import Settings
    from core.requests import ModelRequest, OverLimit
    from core.tokenization import TokenCounter

_INLINE_CHARS = 16384  # below this, tokenizing inline is cheaper than a thread hop (core.offload)


class TokenLimitStage:
    name = "token_limit"

    def __init__(self, request_limit: int | None = None, document_limit: int | None = None) -> None:
        self.request_limit = request_limit
        self.document_limit = document_limit

    def __call__(self, flow: Flow) -> Awaitable[None]:
        # ``parse`` and ``route`` ran before: their results are read directly (the accessors only
        # when one is missing, for their error)
        req = flow.request if flow.request is not None else flow.parsed()
        model = flow.model if flow.model is not None else flow.served()
        counter = model.counter
        policy = req.over_limit_policy(model.route, "truncate_inputs" in flow.snapshot.flags)
        limit = model.facts.max_input_tokens if policy.applies else None
        if limit is None and req.truncation is REFUSE:
            raise InvalidRequest(f"The request forbids truncation, but the input limit of '{model.alias}' is not "
                                 "known here (the route sets no max_input_tokens); allow truncation or ask the "
                                 "operator", param="truncate", code="unknown_input_limit")
        if req.is_tokens or req.chars() < _INLINE_CHARS:  # settled now: no coroutine
            self._apply(flow, req, counter, policy, limit)
            return SETTLED
        deadline = flow.deadline(model.facts.timeout_s)
        at_least = req.at_least(counter) if model.layer is None else None  # (a cache may answer much of it)
        if at_least is not None:  # surely too large for its deadline: 413 before paying for the count
            model.feed.refuse_unfit([min(n, limit) for n in at_least] if limit else at_least, deadline)
        # a big request: tokenized, cut and windowed off the event loop, within its timeout (to await)
        return off_loop(self._apply, flow, req, counter, policy, limit, deadline=deadline)

    def _apply(self, flow: Flow, req: ModelRequest, counter: TokenCounter, policy: OverLimit,
               limit: int | None) -> None:
        cut: set[int] = set(req.cap_chars(limit, counter, policy)) if limit else set()
        cut |= set(req.apply_caps(counter))
        model_check = limit is not None and not req.surely_within(limit, counter)
        if not (model_check or cut or self.document_limit is not None or self.request_limit is not None
                or flow.needs_token_counts or req.needs_counts or flow.model is None or not flow.model.reports_usage):
            # nothing can be over a limit, nothing is charged (no ROUTER_* limit, no token budget, the
            # request set no limit of its own), and the upstream reports usage: nothing to count
            return
        counts = req.count(counter)
        flow.token_counts = counts
        over = [i for i, count in enumerate(counts) if limit is not None and count > limit]
        try:
            handled = policy.handle(req, counter, counts, over, limit or 0,
                                    partial(self._router_limits, flow, req, counter=counter, param=req.param))
        except Exception:
            flow.prompt_tokens = sum(counts)  # a refused request's usage: as counted (with any per-item cut)
            raise
        flow.token_counts = handled.counts  # usage: what the model reads (every window scored)
        flow.prompt_tokens = sum(handled.counts)
        headers: dict[str, str] = {}
        if handled.windowed:
            headers["X-Chunked-Documents"] = ",".join(map(str, handled.windowed))
        cut |= set(handled.cut)
        if cut:
            headers["X-Truncated-Inputs"] = ",".join(map(str, sorted(cut)))
        flow.response_headers.update(headers)

    def _router_limits(self, flow: Flow, req: ModelRequest, counts: list[int], counter, param: str) -> None:
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


@dataclass(frozen=True, slots=True)
class TokenLimits:
    request_limit: int | None = None
    document_limit: int | None = None


SETTINGS = SettingsSection(TokenLimits, (
    EnvOption("ROUTER_SAFE_REQUEST_TOKEN_LIMIT", "request_limit", "int", None, "most tokens in one request",
              minimum=1),
    EnvOption("ROUTER_DOCUMENT_TOKEN_LIMIT", "document_limit", "int", None,
              "most tokens in one input or rerank document", minimum=1),
), title="token limits")


@hookimpl
def register_settings(register) -> None:
    register(SETTINGS)


@hookimpl
def register_stages(register, settings: Settings) -> None:
    limits = settings.of(TokenLimits)
    register(TokenLimitStage(limits.request_limit, limits.document_limit))
