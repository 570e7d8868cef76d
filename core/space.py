"""The embedding space a vector lives in, named by a short fingerprint (``X-Embedding-Space``).

Two vectors can be compared only when the same model, fed the same way, made them and they were
shaped alike. The fingerprint is a digest of exactly that, computed from config (never from
process state, so every replica of one config gives the same one):

* the route: its served model (``served_name``, upstream type) and every upstream and route option
  declared ``changes_space`` (``core.options.Option``): a model path, qwen3's instruction, the
  operator's ``revision``, pooling or normalisation where an adapter declares them;
* the prompt put before inputs of the request's input type (not the type's name: two types with
  one prompt are one space);
* request-level fields that change vectors (``REQUEST_FIELDS``, e.g. the gateway's own
  normalisation of TEI's and Jina's answers);
* the dimensions actually returned and the output type (``float`` and ``base64`` are one space;
  ``int8``, ``uint8``, ``binary`` and ``ubinary`` each their own).

What shapes the cache key and what changes the space are two flags on one declaration
(``Option.shapes_output``, ``Option.changes_space``): dimensions and output types change the space
but are applied after the cache; token-id mode, truncation, upstream URLs and wire encodings shape
the key (or the input) but not the space. A client may pin a space with
``X-Expect-Embedding-Space``: another one is a 409 before the model is called.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import SpaceMismatch
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.config import ModelRoute

HEADER = "X-Embedding-Space"
EXPECT_HEADER = "X-Expect-Embedding-Space"
PREFIX = "es1-"  # the fingerprint's version: a change to what it covers is a new prefix
#: How many fingerprint sets one served model remembers (input types × widths × output types × fields a
#: client may ask for); past it the oldest is forgotten and worked out again when asked for.
MEMO_SIZE = 64
#: Output types as the space sees them: base64 is float32 bytes, the same vectors as float.
SAME_SPACE = {"base64": "float"}

#: A route option core owns: the operator's name for what is behind the route.
REVISION = Option("revision", str, None, "the model's revision: part of the cache key and of the embedding space "
                                         "(X-Embedding-Space); change it when the model behind the route changes")
ROUTE_OPTIONS = (REVISION,)

#: Fields of a request, beyond its inputs, that change what comes back, each with its two flags:
#: ``shapes_output`` puts it in the cache key (applied before the cache, by the model), and
#: ``changes_space`` in the fingerprint. A field not declared here counts as both.
REQUEST_FIELDS = OptionSchema([
    Option("normalized", bool, False, "unit-length vectors made in the gateway (TEI /embed always, Jina's "
                                      "normalized: true), after the cache", shapes_output=False, changes_space=True),
    # a request's core.variant.Variant, away from its default: the model answers otherwise
    Option("normalize", bool, True, "false: the model's vectors before its own normalisation (vLLM, TEI)"),
    Option("add_special_tokens", bool, True, "false: the model reads each input without its special tokens (vLLM)"),
])


def _flagged(values: Mapping[str, Any], schema: OptionSchema | None, flag: str) -> dict[str, Any]:
    """The values whose option is declared with ``flag`` (an undeclared one counts as flagged)."""
    return {k: v for k, v in sorted(values.items())
            if schema is None or k not in schema or getattr(schema.options[k], flag)}


def cache_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request-level ``fields`` the cache key must hold."""
    return _flagged(fields, REQUEST_FIELDS, "shapes_output")


def space_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request-level ``fields`` the fingerprint must hold."""
    return _flagged(fields, REQUEST_FIELDS, "changes_space")


@dataclass(frozen=True, slots=True)
class RouteSpace:
    """What of a route decides its space, resolved once per served model: its model's identity
    (served name, upstream type, the options declared ``changes_space``) and its prompts.

    ``memo`` holds the fingerprints already worked out for this served model (it lives as long as
    the snapshot that made it), so an answer names its space without a JSON dump and a digest."""

    identity: str
    prompts: Mapping[str, str] | None = None
    memo: dict[Any, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, route: ModelRoute, upstream_schema: OptionSchema | None = None,
           route_schema: OptionSchema | None = None) -> RouteSpace:
        """Without the schemas every option counts (an unknown one may change vectors)."""
        up = route.upstream
        identity = {"served_name": route.served_name, "upstream": up.type,
                    "upstream_options": _flagged(up.options, upstream_schema, "changes_space"),
                    "options": _flagged(route.options, route_schema, "changes_space")}
        return cls(json.dumps(identity, sort_keys=True, default=str), route.prompts)

    def prompt(self, input_type: str | None) -> str:
        """The text put before inputs of ``input_type`` (a request's input type is resolved
        against the route's prompts before it gets here)."""
        if input_type is None or self.prompts is None:
            return ""
        return self.prompts.get(input_type, "")


def fingerprint(route: RouteSpace, input_type: str | None, fields: Mapping[str, Any], dimensions: int | None,
                output: str = "float") -> str:
    """The space of vectors of ``route`` for inputs of ``input_type``, made with the request-level
    ``fields`` (only those declared ``changes_space`` count), ``dimensions`` wide, as ``output``."""
    parts = {"route": route.identity, "prompt": route.prompt(input_type), "fields": space_fields(fields),
             "dimensions": dimensions, "output": SAME_SPACE.get(output, output)}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return PREFIX + digest[:16]


def fingerprints(route: RouteSpace, input_type: str | None, fields: Mapping[str, Any], dimensions: int | None,
                 outputs: Sequence[str]) -> tuple[str, ...]:
    """One fingerprint per output type an answer carries (Cohere may ask for several), in order, each once.

    Remembered on ``route`` (``RouteSpace.memo``, at most ``MEMO_SIZE``): a fingerprint depends only on
    these arguments, so the common answer reads it from a dict. Fields that cannot key a dict (a list
    value) are worked out each time."""
    memo = route.memo
    try:
        key = (input_type, dimensions, tuple(outputs),  # each field with its type: True and 1 are one dict key
               tuple([(k, v.__class__, v) for k, v in fields.items()]) if fields else ())
        spaces = memo.get(key)
    except TypeError:  # an unhashable field value
        key, spaces = None, None
    if spaces is None:
        spaces = tuple(dict.fromkeys([fingerprint(route, input_type, fields, dimensions, o) for o in outputs]))
        if key is not None:
            if len(memo) >= MEMO_SIZE:
                del memo[next(iter(memo))]
            memo[key] = spaces
    return spaces


def header_value(spaces: Sequence[str]) -> str:
    return ", ".join(spaces)


def check_expected(expected: str | None, spaces: Sequence[str], alias: str) -> None:
    """SpaceMismatch (409) when the client pinned a space the answer would not be in."""
    if expected is None:
        return
    wanted = expected.strip()
    if all(value.strip() in spaces for value in wanted.split(",")):  # one, or a whole header copied back
        return
    raise SpaceMismatch(f"The model '{alias}' now serves embedding space {header_value(spaces)}, not the "
                        f"{wanted[:40]!r} this request expects ({EXPECT_HEADER}): vectors from it would not match "
                        "an index built in the expected space", expected=wanted[:40], serving=header_value(spaces))
