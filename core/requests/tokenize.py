"""Tokenize requests (TEI's ``/tokenize``): routed to an embedding model, prompted like an
embeddings request, answered by the model's own tokenizer; nothing is queued or cut (the
model's limit does not apply, the ROUTER_* limits do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.kinds import EMBEDDINGS, Kind
from core.requests.common import usage
from core.requests.texts import TextInputs
from core.requests.truncation import NO_LIMIT, OverLimit

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.served import ModelCall, ServedModel


@dataclass(slots=True)
class TokenizeOutcome:
    model: str
    tokens_by_input: list[list[dict[str, Any]]]
    tokens: int
    cache_hits: None = None


@dataclass(slots=True)
class TokenizeRequest(TextInputs):
    name: ClassVar[str] = "tokenize"
    kind: ClassVar[Kind] = EMBEDDINGS  # routed to the embedding model whose tokenizer it reads
    truncation: ClassVar[None] = None  # a tokenize request says nothing of cutting

    add_special_tokens: bool = True

    def over_limit_policy(self, route: ModelRoute, flag_end: bool) -> OverLimit:
        return NO_LIMIT

    @property
    def needs_counts(self) -> bool:
        return False

    def check_route(self, route: ModelRoute) -> None:
        self.apply_prompt(route)

    async def run(self, model: ServedModel, call: ModelCall, tokens: int | None) -> TokenizeOutcome:
        tokens_by_input = model.tokenize(self.texts, self.add_special_tokens)
        return TokenizeOutcome(model.alias, tokens_by_input, usage(tokens, None, lambda: self.count(model.counter)))
