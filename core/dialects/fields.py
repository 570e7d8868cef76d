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
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequest

JSON = dict[str, Any]

STRING: JSON = {"type": "string"}
NONEMPTY_STRING: JSON = {"type": "string", "minLength": 1}
BOOLEAN: JSON = {"type": "boolean"}
POSITIVE_INT: JSON = {"type": "integer", "minimum": 1}
STRINGS: JSON = {"type": "array", "items": NONEMPTY_STRING, "minItems": 1}
TEXT_OBJECT: JSON = {"type": "object", "properties": {"text": NONEMPTY_STRING}, "required": ["text"]}
_PLACE = itemgetter(0)  # an entry's place in its table



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
    #: each field with the values it takes without a call to ``check`` (``_quick``)
    plan: tuple[tuple[Field, Mapping[type, Any]], ...] = field(init=False, repr=False, compare=False)

    #: by name: (its place in the table, the field, its quick values); the required ones alone
    entries: Mapping[str, tuple[int, Field, Mapping[type, Any]]] = field(init=False, repr=False, compare=False)
    required: tuple[tuple[int, Field, Mapping[type, Any]], ...] = field(init=False, repr=False, compare=False)
    paired: frozenset[str] = field(init=False, repr=False, compare=False)  # the names in ``exclusive``

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        object.__setattr__(self, "plan", tuple((f, _quick(f.schema)) for f in self.fields))
        entries = {f.name: (i, f, quick) for i, (f, quick) in enumerate(self.plan)}
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "required", tuple(e for e in entries.values() if e[1].required))
        object.__setattr__(self, "paired", frozenset(name for pair in self.exclusive for name in pair))

    def read(self, body: Any, where: str) -> StrictBody:
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        by_name = self.by_name
        values = StrictBody(body)
        paired = 0  # keys of the body named in an ``exclusive`` pair
        for k, v in body.items():  # unknown keys first, then nulls read as absent
            f = by_name.get(k)
            if f is None:
                raise InvalidRequest(f"Unrecognized request argument supplied: {k!r} ({where} takes "
                                     f"{', '.join(by_name)})", param=str(k), code="unknown_parameter")
            if v is None and f.nullable:
                del values[k]
            if k in self.paired:
                paired += 1
        if paired > 1:
            for a, b in self.exclusive:
                if a in body and b in body:
                    raise InvalidRequest(f"Give '{a}' or '{b}', not both", param=b)
        # The keys the body has and the required ones it lacks, in the table's order: the first
        # field amiss is the one named. A body holds a few of a table's fields: only they are read.
        entries = self.entries
        todo = [entries[k] for k in values]
        for entry in self.required:
            if entry[1].name not in values:
                todo.append(entry)
        todo.sort(key=_PLACE)
        for _, f, quick in todo:
            name = f.name
            if name not in values:
                raise InvalidRequest(f"'{name}' is required", param=name)
            # The common values pass inline (``_quick``); anything else, right or wrong, goes through ``check``.
            v = values[name]
            cls = v.__class__
            spec = quick.get(cls)
            if spec is None:
                ok = False
            elif cls is str:
                ok = len(v) >= spec[0] and (spec[1] is None or v in spec[1])
            elif cls is bool:
                ok = v in spec
            elif cls is int:
                ok = spec[0] <= v <= spec[1]
            else:  # a list of strings
                ok = spec[0] <= len(v) <= spec[1]
                if ok:
                    for item in v:
                        if item.__class__ is not str or len(item) < spec[2]:
                            ok = False
                            break
            if not ok:
                values[name] = _checked(f, v)
        return values

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


class StrictBody(dict[str, Any]):
    """The checked values of one body (absent and null keys are missing): a dict, so the codec's
    reads (``get``, ``[]``, ``in``) are the dict's own."""

    if TYPE_CHECKING:  # a checked value is whatever its schema allows, as before
        def get(self, name: str, default: Any = None, /) -> Any: ...


def _checked(f: Field, value: Any) -> Any:
    """``value`` of ``f`` checked against its schema (an integer given as 2.0 read as 2); the error names ``f``."""
    try:
        check(value, f.schema, f.name)
    except InvalidRequest as exc:  # the param is the field; the message says where in it
        hint = f" ({f.name}: {f.help})" if f.help else ""
        raise InvalidRequest(exc.message + hint, param=f.name, code=exc.code) from None
    if f.schema.get("type") == "integer":  # JSON Schema counts 2.0 as an integer
        return int(value)
    return value


def _quick(schema: JSON) -> dict[type, Any]:
    """What ``FieldTable.read`` may accept inline for ``schema``, by the value's exact type: a
    string's (minimum length, enum or None), the booleans allowed, an integer's (minimum, maximum),
    a list of strings' (minimum items, maximum items, each string's minimum length). Each entry
    accepts only what ``check`` accepts; a value it does not cover goes to ``check``."""
    out: dict[type, Any] = {}
    for option in schema.get("oneOf", (schema,)):  # ``check`` takes a value any option takes
        kind = option.get("type")
        if "oneOf" in option:
            continue
        if "const" in option:
            if option["const"].__class__ is bool:
                out.setdefault(bool, frozenset((option["const"],)))
        elif kind == "string":
            out.setdefault(str, (option.get("minLength", 0),
                                 frozenset(option["enum"]) if "enum" in option else None))
        elif kind == "boolean":
            out.setdefault(bool, frozenset((True, False)))
        elif kind == "integer":
            out.setdefault(int, (option.get("minimum", -math.inf), option.get("maximum", math.inf)))
        elif kind == "array":
            item = _string_item(option.get("items"))
            if item is not None:
                out.setdefault(list, (option.get("minItems", 0), option.get("maxItems", math.inf), item))
    return out


def _string_item(schema: JSON | None) -> int | None:
    """The minimum length of a string ``schema`` (or one of its ``oneOf`` options) takes as it is; None if none."""
    if schema is None:
        return None
    for option in schema.get("oneOf", (schema,)):
        if option.get("type") == "string" and "enum" not in option and "oneOf" not in option and "const" not in option:
            return int(option.get("minLength", 0))
    return None


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
