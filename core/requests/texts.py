"""What requests over a list of texts share (embeddings, tokenize): counting with the model's
tokenizer, cutting an input at its end or its start, capping it in characters, and the route's
prompt for the request's input type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.config.caps import DEFAULT_CAPS, InputCaps
from core.errors import InvalidRequest
from core.variant import DEFAULT_VARIANT, Variant

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.requests.truncation import OverLimit
    from core.tokenization import TokenCounter

EmbeddingInput = list[str] | list[list[int]]


@dataclass(slots=True)
class TextInputs:
    param: ClassVar[str] = "input"  # the field limits and errors point at

    model: str | None  # None: the routing's default model for the kind
    inputs: EmbeddingInput
    is_tokens: bool
    input_type: str | None = None  # query, document, classification, clustering: selects the route's prompt
    caps: InputCaps = field(default=DEFAULT_CAPS, kw_only=True, repr=False)  # set by check_caps
    variant: Variant = field(default=DEFAULT_VARIANT, kw_only=True)  # what it asks beyond its inputs (core.variant)
    item_count: int = field(default=0, init=False, repr=False, compare=False)  # the inputs sent: set by check_caps

    def check_caps(self, caps: InputCaps) -> None:
        """Refuse (413) token-id inputs over the caps, before anything reads them; keep ``caps``."""
        self.caps, self.item_count = caps, len(self.inputs)
        if not self.is_tokens:
            return  # a text input's size is the model's limit's to bound (cap_chars)
        total = 0
        for i, ids in enumerate(self.inputs):
            caps.check("token_ids_per_input", len(ids), f"'{self.param}[{i}]'", "token ids", self.param)
            total += len(ids)
        caps.check("token_ids_per_request", total, "The request", "token ids", self.param)

    @property
    def texts(self) -> list[str]:
        return self.inputs if not self.is_tokens else []  # type: ignore[return-value]

    def chars(self) -> int:
        return sum(map(len, self.inputs))

    def count(self, counter: TokenCounter) -> list[int]:
        """Tokens per input, as the model sees them (without its special tokens when asked so)."""
        if self.is_tokens:
            return [len(ids) for ids in self.inputs]
        if counter.keeps_encodings:  # an in-process model runs these encodings (core.tokenized)
            counts, self.inputs = counter.count_keeping(self.inputs)  # type: ignore[arg-type]  # texts
        else:
            counts = counter.count(self.inputs)  # type: ignore[arg-type]  # texts: token ids returned above
        return counts if self.variant.add_special_tokens else [max(0, n - counter.specials) for n in counts]

    def at_least(self, counter: TokenCounter) -> list[int] | None:
        """At least how many tokens the model runs per input, found without tokenizing (None:
        the request runs no model)."""
        return [len(ids) for ids in self.inputs] if self.is_tokens else counter.at_least(self.texts)

    def apply_caps(self, counter: TokenCounter) -> list[int]:
        """Per-input token caps the caller asked for: none for texts."""
        return []

    def cap_chars(self, limit: int, counter: TokenCounter, policy: OverLimit) -> list[int]:
        """Inputs over ``limit`` × the longest token's characters are over the model's allowance
        whatever they tokenize to (a 15 MB 'word' is one [UNK]): the policy refuses them or cuts
        them there, before tokenizing."""
        cap = limit * counter.max_token_chars
        if self.is_tokens:
            return []
        items: list[Any] = self.inputs
        cut = [i for i, text in enumerate(items) if len(text) > cap]
        for i in cut:
            items[i] = policy.cut_text(items[i], cap, self.param, i)
        return cut

    def surely_within(self, limit: int, counter: TokenCounter) -> bool:
        """True when no input can reach ``limit`` tokens (a token covers at least a byte)."""
        if self.is_tokens:
            return all(len(ids) <= limit for ids in self.inputs)
        return all(len(text.encode()) + counter.specials <= limit for text in self.texts)

    def truncate(self, i: int, counter: TokenCounter, limit: int) -> int:
        """Cut input ``i`` in place to its first ``limit`` tokens; return its new count."""
        items: list[Any] = self.inputs
        if self.is_tokens:
            items[i] = items[i][:limit]
            return len(items[i])
        items[i] = counter.truncate(items[i], limit)
        return counter.count([items[i]])[0]

    def truncate_start(self, i: int, counter: TokenCounter, limit: int) -> int:
        """Cut input ``i`` in place to its last ``limit`` tokens; return its new count."""
        items: list[Any] = self.inputs
        if self.is_tokens:
            items[i] = items[i][-limit:]
            return len(items[i])
        items[i] = counter.truncate_start(items[i], limit)
        return counter.count([items[i]])[0]

    def split_long(self, counter: TokenCounter, limit: int, over: list[int]) -> tuple[list[int], list[int]]:
        raise RuntimeError("text inputs are cut or refused, not split")

    def apply_prompt(self, route: ModelRoute) -> None:
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
        self.inputs = [prefix + text for text in self.inputs]  # type: ignore[operator]  # texts: ids refused above
