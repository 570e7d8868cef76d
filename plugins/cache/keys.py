"""What an embedding cache entry is keyed on: whose it is (its scope), the model's final input,
everything about the route that changes a vector, and the request-level fields that do.

The scope is the caller's: an API key's name (never the key itself), one for every anonymous
caller, or one for the whole route when it declares ``cache: shared``. It is mixed into the
route's digest, so a key's hits come only from its own earlier inputs.

The final input is what the adapter is sent: after the prompt, after OpenAI token ids were
decoded, after truncation. The route's part is a digest of its served model, its upstream type
and URLs, its prompts, truncation, and every upstream and route option declared
as shaping the output (``Option.shapes_output``): an adapter's own (qwen3's query_instruction,
a local model's path) and the operator's ``revision`` are in it; retries, timeouts, pool sizes
and queue bounds are not. It is not the whole config digest, so an auth.yaml edit keeps the
cache. ``dimensions`` and output encodings are applied after the cache, from the full float
vector, so they share entries. The token-id mode is not in it: cl100k_base ids are decoded to
text before the cache and the model's own ids are keyed as ids, so two aliases of one model, one
per vocabulary, share their entries. The request-level fields (``ModelCall.shaping``: the
request's ``core.variant.Variant`` among them, ``normalize: false``…) enter ``scoped_digest``: a
vector without the model's normalisation is never served for one with it, nor the other way round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.options import OptionSchema


def _shaping(values: Mapping[str, Any], schema: OptionSchema) -> dict[str, Any]:
    """The options that may change an answer (an option no schema declares counts as one)."""
    return {k: v for k, v in sorted(values.items())
            if k not in schema or schema.options[k].shapes_output}


def route_digest(route: ModelRoute, upstream_schema: OptionSchema, route_schema: OptionSchema) -> bytes:
    up = route.upstream
    identity = {
        "served_name": route.served_name,
        "upstream": [up.type, sorted(up.urls), _shaping(up.options, upstream_schema)],
        "options": _shaping(route.options, route_schema),
        "prompts": dict(route.prompts) if route.prompts is not None else None,
        "truncation": route.truncation,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).digest()


SHARED = "shared"


def scope_of(tenant_name: str, shared: bool) -> str:
    """The scope of a caller's entries: its tenant (an API key's name; ``anonymous`` is a name
    no key may have), or the route's one shared scope."""
    return SHARED if shared else f"tenant:{tenant_name}"


def scoped_digest(digest: bytes, scope: str, shaping: Mapping[str, Any]) -> bytes:
    """The route's digest for one scope and the request-level fields that shape the answer
    (``core.space.cache_fields``)."""
    extra = json.dumps([scope, dict(sorted(shaping.items()))], sort_keys=True, default=str).encode()
    return hashlib.sha256(digest + b"\0" + extra).digest()


def item_keys(digest: bytes, inputs: Sequence[Any], is_tokens: bool) -> list[bytes]:
    """One key per input: text as UTF-8, token ids as int64, each after the route's digest."""
    keys = []
    for item in inputs:
        data = np.asarray(item, dtype=np.int64).tobytes() if is_tokens else str(item).encode("utf-8")
        keys.append(hashlib.blake2b(data, digest_size=20, key=digest[:32], person=b"ids" if is_tokens else b"text")
                    .digest())
    return keys
