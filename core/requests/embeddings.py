"""Embedding requests (and TEI's tokenize, routed like one): counted, cut, prompted, decoded
from OpenAI token ids, sent, and turned into an outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from core.config.routing import CL100K
from core.errors import InvalidRequest
from core.requests.common import EmbeddingsOutcome, Truncation, over_limit, usage
from core.tokenization import decode_cl100k
from core.vectors import shape_vectors

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.served import ModelCall, ServedModel
    from core.tokenization import TokenCounter

EmbeddingInput = list[str] | list[list[int]]


@dataclass(slots=True)
class EmbeddingsRequest:
    kind: ClassVar[str] = "embeddings"
    param: ClassVar[str] = "input"  # the field limits and errors point at

    model: str | None  # None: the routing's default model for the kind
    inputs: EmbeddingInput
    is_tokens: bool
    dimensions: int | None = None
    user: str | None = None
    input_type: str | None = None  # query, document, classification, clustering: selects the route's prompt
    truncation: Truncation = None

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

    async def run(self, model: ServedModel, call: ModelCall, tokens: int | None) -> EmbeddingsOutcome:
        """Embed on ``model`` and shape the vectors as asked; ``tokens`` as counted before the call."""
        result = await model.embed(self.inputs, call, is_tokens=self.is_tokens)
        vectors = result.vectors  # checked by the model: one row per input, its width, finite
        if self.dimensions is not None and self.dimensions > vectors.shape[1]:
            raise InvalidRequest(f"'dimensions' is {self.dimensions}, but '{model.alias}' has "
                                 f"{vectors.shape[1]}", param="dimensions")
        return EmbeddingsOutcome(model.alias, shape_vectors(vectors, self.dimensions),
                                 usage(tokens, result.prompt_tokens, lambda: self.count(model.counter)),
                                 cache_hits=result.cache_hits)


@dataclass(slots=True)
class TokenizeOutcome:
    model: str
    tokens_by_input: list[list[dict[str, Any]]]
    tokens: int
    cache_hits: None = None


@dataclass(slots=True)
class TokenizeRequest(EmbeddingsRequest):
    """Tokenize with the embedding model's own tokenizer: routed, limited and counted like an
    embeddings request; answered by the route's token counter, not the adapter."""

    add_special_tokens: bool = True

    def truncation_mode(self, route: ModelRoute, flag_end: bool) -> str:
        return "none"  # tokenizing reads everything: no model limit applies

    async def run(self, model: ServedModel, call: ModelCall,  # type: ignore[override]
                  tokens: int | None) -> TokenizeOutcome:
        tokens_by_input = model.tokenize(self.texts, self.add_special_tokens)
        return TokenizeOutcome(model.alias, tokens_by_input, usage(tokens, None, lambda: self.count(model.counter)))
