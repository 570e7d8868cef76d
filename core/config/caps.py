"""Caps on what one request may make the gateway read, declared once (core's ROUTER_MAX_*
variables) and checked before any work that grows with the input: a request over one is
refused with a 413 naming the cap, in the caller's dialect, before it is tokenized.

What a model's own limit covers (an embedding input's characters, ``max_input_tokens``) stays
with the model's limit and its truncation policy; these caps bound the rest: the text of a
/tokenize request and the size of its answer, a rerank query, a rerank request's documents and
the windows they are read in, and token-id inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.errors import PayloadTooLarge


@dataclass(frozen=True, slots=True)
class InputCaps:
    tokenize_chars: int = 200_000  # characters in one /tokenize request, all inputs together
    tokenize_tokens: int = 50_000  # tokens one /tokenize request answers (each is one object of the answer)
    query_chars: int = 32_768  # characters of a rerank query (it is read once per document and window)
    rerank_chars: int = 2_000_000  # characters of a rerank request's documents together
    rerank_pairs: int = 4_096  # (query, document or window) pairs one rerank request is scored as
    token_ids_per_input: int = 32_768  # token ids in one input sent as ids (long-context models read 32k)
    token_ids_per_request: int = 300_000  # token ids in one request, all inputs together

    ENV: ClassVar[dict[str, str]] = {
           "tokenize_chars": "ROUTER_MAX_TOKENIZE_CHARS", "tokenize_tokens": "ROUTER_MAX_TOKENIZE_TOKENS",
           "query_chars": "ROUTER_MAX_QUERY_CHARS", "rerank_chars": "ROUTER_MAX_RERANK_CHARS",
           "rerank_pairs": "ROUTER_MAX_RERANK_PAIRS", "token_ids_per_input": "ROUTER_MAX_TOKEN_IDS_PER_INPUT",
           "token_ids_per_request": "ROUTER_MAX_TOKEN_IDS_PER_REQUEST"}

    HELP: ClassVar[dict[str, str]] = {
        "tokenize_chars": "characters in one /tokenize request (all inputs); over it: 413 before tokenizing",
        "tokenize_tokens": "tokens one /tokenize request answers (bounds its answer); over it: 413",
        "query_chars": "characters of a rerank query; over it: 413",
        "rerank_chars": "characters of one rerank request's documents together; over it: 413",
        "rerank_pairs": "(query, document or window) pairs one rerank request is scored as; over it: 413",
        "token_ids_per_input": "token ids in one input sent as ids; over it: 413",
        "token_ids_per_request": "token ids in one request (all inputs); over it: 413",
    }

    def check(self, cap: str, size: int, what: str, unit: str, param: str) -> None:
        """A 413 naming ``what`` (``size`` ``unit`` of it) when it is over the cap ``cap`` (a field)."""
        limit = getattr(self, cap)
        if size > limit:
            raise PayloadTooLarge(f"{what} has {size} {unit}; the limit is {limit} ({self.ENV[cap]})",
                                  param=param, code="input_too_large")


    def check_id_arrays(self, body: object) -> None:
        """Token-id arrays in a parsed JSON body, before a codec walks them: a list of numbers (one
        input) or a list of such lists, under any key, is held to the token-id caps by its
        lengths alone (a 16 MB array is refused without reading its numbers)."""
        if not isinstance(body, dict):
            return
        for key, value in body.items():
            if not isinstance(value, list) or not value:
                continue
            if isinstance(value[0], (int, float)) and not isinstance(value[0], bool):
                self.check("token_ids_per_input", len(value), f"'{key}'", "token ids", str(key))
                continue
            total = 0
            for i, item in enumerate(value):
                if isinstance(item, list):
                    self.check("token_ids_per_input", len(item), f"'{key}[{i}]'", "token ids", str(key))
                    total += len(item)
            self.check("token_ids_per_request", total, "The request", "token ids", str(key))


DEFAULT_CAPS = InputCaps()
