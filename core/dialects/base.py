"""What a wire format is: a path, a field table, a parser into ``core.requests``, a renderer of
outcomes and of errors, each in its own shape.

A codec knows nothing of auth, limits, routing or adapters: the chain runs the same stages
whichever codec parsed the body and ends in a typed outcome (``core.requests``); the HTTP edge
hands that to the codec, with the state its parser kept (``Parsed.state``: the output choices
of its body, typed by the codec), to render. Its field table is the one source for strictness
(an unknown field is a 400 naming it) and for the request schema in ``/openapi.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from core import ids
from core.dialects.fields import JSON, FieldTable
from core.errors import GatewayError, InvalidRequest
from core.kinds import Kind
from core.requests import ModelRequest, Outcome

S = TypeVar("S")

OPENAI_ERROR_SCHEMA: JSON = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_inputs: int


class Parsed(NamedTuple, Generic[S]):  # immutable, and quicker to make than a frozen dataclass
    """A parsed body: the internal request the chain runs, and what only the codec reads back
    when it renders (its own output choices; None when it keeps nothing)."""

    request: ModelRequest
    state: S | None = None


class Codec(Generic[S]):
    name: ClassVar[str]  # the OpenAPI operationId
    path: ClassVar[str]
    kind: ClassVar[Kind]
    summary: ClassVar[str]
    fields: ClassVar[FieldTable]
    response_schema: ClassVar[JSON] = {"type": "object"}
    #: the schema of ``render_error``'s body, and its name under components/schemas
    error_schema: ClassVar[tuple[str, JSON]] = ("Error", OPENAI_ERROR_SCHEMA)

    def select(self, body: Any) -> Codec:
        """The codec for this body; a path shared by two formats picks by the body's keys."""
        return self

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[S]:
        raise NotImplementedError

    def render(self, request: Any, state: S | None, outcome: Any) -> Any:
        raise NotImplementedError

    def headers(self, outcome: Any) -> dict[str, str]:
        """Headers this format puts on an answer beside its body (TEI's usage); none by default."""
        return {}

    def render_error(self, error: GatewayError) -> Any:
        """The error's body in this format's shape (OpenAI's unless the format has its own)."""
        return error.to_body()

    def alternatives(self) -> tuple[Codec, ...]:
        """Every codec a body on this path may be parsed by (for /openapi.json)."""
        return (self,)


def count_items(n: int, limits: ParseLimits, param: str) -> None:
    if n > limits.max_inputs:
        raise InvalidRequest(f"'{param}' has {n} items; at most {limits.max_inputs} are allowed", param=param)


def response_id() -> str:
    return ids.token()


__all__ = ["Codec", "Outcome", "ParseLimits", "Parsed"]
