"""Declarative request fields: one table per wire format, read by the parser and by /openapi.json.

A ``Field`` names a key, its JSON Schema and what it means. ``StrictBody`` refuses any key a
dialect does not declare (a 400 naming it, as OpenAI's API does), reads ``null`` as absent (SDKs
send their unset parameters as null), and checks each value against the small set of schema
shapes used here, so the schema that documents a field is the one that validates it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest

JSON = dict[str, Any]

STRING: JSON = {"type": "string"}
NONEMPTY_STRING: JSON = {"type": "string", "minLength": 1}
BOOLEAN: JSON = {"type": "boolean"}
POSITIVE_INT: JSON = {"type": "integer", "minimum": 1}
STRINGS: JSON = {"type": "array", "items": NONEMPTY_STRING, "minItems": 1}
TEXT_OBJECT: JSON = {"type": "object", "properties": {"text": NONEMPTY_STRING}, "required": ["text"]}



def enum(*values: str) -> JSON:
    return {"type": "string", "enum": list(values)}


def one_of(*schemas: JSON) -> JSON:
    return {"oneOf": list(schemas)}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    schema: JSON
    help: str = ""
    required: bool = False
    nullable: bool = True  # ``null`` reads as absent


@dataclass(frozen=True, slots=True)
class FieldTable:
    """The fields of one request body; ``read`` checks a parsed JSON body against them.

    ``exclusive`` pairs name one thing twice (``dimensions`` and Voyage's ``output_dimension``):
    a body may hold at most one key of each pair, whatever its value.
    """

    fields: tuple[Field, ...]
    exclusive: tuple[tuple[str, str], ...] = ()
    by_name: Mapping[str, Field] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def read(self, body: Any, where: str) -> StrictBody:
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        unknown = [k for k in body if k not in self.by_name]
        if unknown:
            raise InvalidRequest(f"Unrecognized request argument supplied: {unknown[0]!r} ({where} takes "
                                 f"{', '.join(self.by_name)})", param=str(unknown[0]), code="unknown_parameter")
        for a, b in self.exclusive:
            if a in body and b in body:
                raise InvalidRequest(f"Give '{a}' or '{b}', not both", param=b)
        values = {k: v for k, v in body.items() if v is not None or not self.by_name[k].nullable}
        for f in self.fields:
            if f.name in values:
                try:
                    check(values[f.name], f.schema, f.name)
                    if f.schema.get("type") == "integer":  # JSON Schema counts 2.0 as an integer
                        values[f.name] = int(values[f.name])
                except InvalidRequest as exc:  # the param is the field; the message says where in it
                    hint = f" ({f.name}: {f.help})" if f.help else ""
                    raise InvalidRequest(exc.message + hint, param=f.name, code=exc.code) from None
            elif f.required:
                raise InvalidRequest(f"'{f.name}' is required", param=f.name)
        return StrictBody(values)

    def schema(self) -> JSON:
        """The body's JSON Schema (OpenAPI 3.1)."""
        props = {}
        for f in self.fields:
            prop = dict(f.schema)
            if f.help:
                prop["description"] = f.help
            props[f.name] = {"anyOf": [prop, {"type": "null"}]} if f.nullable and not f.required else prop
        required = [f.name for f in self.fields if f.required]
        out: JSON = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = required
        if self.exclusive:
            out["not"] = {"anyOf": [{"required": list(pair)} for pair in self.exclusive]}
        return out


class StrictBody:
    """The checked values of one body (absent and null keys are missing)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        """A required field's value (the table refused a body without it)."""
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values


def check(value: Any, schema: JSON, param: str) -> None:
    """``value`` against the schema shapes used by the field tables; InvalidRequest naming ``param``."""
    if "oneOf" in schema:
        for option in schema["oneOf"]:
            try:
                check(value, option, param)
                return
            except InvalidRequest:
                continue
        raise InvalidRequest(f"'{param}' has the wrong type or shape", param=param)
    if "const" in schema:  # a value the gateway serves only one way (Jina's normalized: true)
        if value != schema["const"] or type(value) is not type(schema["const"]):
            raise InvalidRequest(f"'{param}' can only be {json.dumps(schema['const'])} here", param=param,
                                 code="unsupported_parameter")
        return
    kind = schema.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidRequest(f"'{param}' must be a string", param=param)
        if len(value) < schema.get("minLength", 0):
            raise InvalidRequest(f"'{param}' must not be empty", param=param)
        if "enum" in schema and value not in schema["enum"]:
            raise InvalidRequest(f"'{param}' must be one of {', '.join(map(repr, schema['enum']))}", param=param)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidRequest(f"'{param}' must be a boolean", param=param)
    elif kind == "integer":
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"'{param}' must be an integer", param=param)
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            raise InvalidRequest(f"'{param}' must be an integer >= {schema.get('minimum')}", param=param)
    elif kind == "array":
        if not isinstance(value, list):
            raise InvalidRequest(f"'{param}' must be a list", param=param)
        if len(value) < schema.get("minItems", 0):
            raise InvalidRequest(f"'{param}' must not be empty", param=param)
        if len(value) > schema.get("maxItems", len(value)):
            raise InvalidRequest(f"'{param}' takes at most {schema['maxItems']} items here", param=param,
                                 code="unsupported_parameter")
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                check(item, items, f"{param}[{i}]")
    elif kind == "object":
        if not isinstance(value, dict):
            raise InvalidRequest(f"'{param}' must be an object", param=param)
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidRequest(f"'{param}.{name}' is required", param=param)
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                check(value[name], sub, f"{param}.{name}")


def texts_of(documents: Sequence[Any]) -> list[str]:
    """Documents given as strings or ``{"text": ...}`` objects, as strings."""
    return [d["text"] if isinstance(d, dict) else d for d in documents]
