"""What a wire format is: a path, a field table, a parser into ``core.requests`` and a renderer.

A codec knows nothing of auth, limits, routing or adapters: the chain runs the same stages
whichever codec parsed the body, and the codec renders the outcome in its own shape. Its
field table is the one source for strictness (an unknown field is a 400 naming it) and for
the request schema in ``/openapi.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from core.dialects.fields import JSON, FieldTable
from core.errors import InvalidRequest
from core.requests import ModelRequest, Outcome

ErrorStyle = Literal["openai", "cohere"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_inputs: int


class Codec:
    name: ClassVar[str]  # the OpenAPI operationId
    path: ClassVar[str]
    kind: ClassVar[Literal["embeddings", "rerank"]]
    summary: ClassVar[str]
    fields: ClassVar[FieldTable]
    response_schema: ClassVar[JSON] = {"type": "object"}
    errors: ClassVar[ErrorStyle] = "openai"

    def select(self, body: Any) -> Codec:
        """The codec for this body; a path shared by two formats picks by the body's keys."""
        return self

    def parse(self, body: Any, limits: ParseLimits) -> ModelRequest:
        raise NotImplementedError

    def render(self, request: Any, outcome: Any) -> Any:
        raise NotImplementedError

    def alternatives(self) -> tuple[Codec, ...]:
        """Every codec a body on this path may be parsed by (for /openapi.json)."""
        return (self,)


def count_items(n: int, limits: ParseLimits, param: str) -> None:
    if n > limits.max_inputs:
        raise InvalidRequest(f"'{param}' has {n} items; at most {limits.max_inputs} are allowed", param=param)


def response_id() -> str:
    return os.urandom(16).hex()


__all__ = ["Codec", "ErrorStyle", "Outcome", "ParseLimits"]
