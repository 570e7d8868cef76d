"""Tokenize requests (TEI's ``/tokenize``): routed to an embedding model, prompted like an
embeddings request, answered by the model's own tokenizer; nothing is queued or cut (the
model's limit does not apply, the ROUTER_* limits do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.kinds import EMBEDDINGS, Kind
from core.offload import off_loop
from core.requests.common import usage
from core.requests.texts import TextInputs
from core.requests.truncation import NO_LIMIT, OverLimit

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.config.caps import InputCaps
    from core.served import ModelCall, ServedModel
    from core.tokenization import TokenCounter


INLINE_CHARS = 16384  # below this, tokenizing inline is cheaper than a thread hop


@dataclass(slots=True)
class TokenizeOutcome:
    model: str
    tokens_by_input: list[list[dict[str, Any]]]
    tokens: int
    cache_hits: None = None
    spaces: None = None


@dataclass(slots=True)
class TokenizeRequest(TextInputs):
    name: ClassVar[str] = "tokenize"
    kind: ClassVar[Kind] = EMBEDDINGS  # routed to the embedding model whose tokenizer it reads
    truncation: ClassVar[None] = None  # a tokenize request says nothing of cutting

    add_special_tokens: bool = True

    def check_caps(self, caps: InputCaps) -> None:
        """Its characters are capped (the work), and its tokens when tokenized (the answer)."""
        TextInputs.check_caps(self, caps)
        caps.check("tokenize_chars", self.chars(), f"'{self.param}'", "characters", self.param)

    def over_limit_policy(self, route: ModelRoute, flag_end: bool) -> OverLimit:
        return NO_LIMIT

    @property
    def needs_counts(self) -> bool:
        return False

    def at_least(self, counter: TokenCounter) -> list[int] | None:
        return None  # no model runs: nothing to refuse for time

    def check_route(self, route: ModelRoute) -> None:
        self.apply_prompt(route)

    def spaces(self, model: ServedModel, width: int | None = None) -> None:
        return None  # tokens, not vectors

    async def run(self, model: ServedModel, call: ModelCall, tokens: int | None) -> TokenizeOutcome:
        caps = self.caps

        def check(tokens: int) -> None:
            caps.check("tokenize_tokens", tokens, f"'{self.param}'", "tokens", self.param)

        texts = self.texts
        if self.chars() < INLINE_CHARS:
            tokens_by_input = model.tokenize(texts, self.add_special_tokens, check)
        else:  # a big request: tokenized and its answer built off the event loop, within its deadline
            tokens_by_input = await off_loop(model.tokenize, texts, self.add_special_tokens, check,
                                             deadline=call.deadline)
        return TokenizeOutcome(model.alias, tokens_by_input, usage(tokens, None, lambda: self.count(model.counter)))
