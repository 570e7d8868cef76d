"""What an embedding cache entry is keyed on: the model's final input and everything about the
route that changes a vector, nothing else.

The final input is what the adapter is sent: after the prompt, after OpenAI token ids were
decoded, after truncation. The route's part is a digest of its served model, its upstream
(type, URLs and the options that shape the answer, not retries or timeouts), its prompts,
truncation, token-id mode and every route option but the scheduler's and the cache's: an
adapter's own (qwen3's query_instruction) and the operator's ``revision`` (a new model behind
an old name is a new revision). It is not the whole config digest, so an auth.yaml edit keeps
the cache. ``dimensions`` and output encodings are applied after the cache, from the full
float vector, so they share entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from core.config import ModelRoute

# Options that change how a call is made, never what comes back: upstream ones, and the route
# options of the scheduler and the cache. Every other route option is in the key (an adapter's
# own, such as qwen3's query_instruction, may change what the model is sent).
_OPERATIONAL = frozenset({"retries", "retry_backoff_ms", "failure_threshold", "cooldown_seconds", "pool_size",
                          "max_in_flight", "max_response_mb", "max_batch_size", "max_wait_ms"})
_OPERATIONAL_ROUTE = frozenset({"queue_max_items", "queue_max_seconds", "max_batch_tokens", "coalesce_max_request",
                                "coalesce_max_batch", "coalesce_wait_ms", "cache"})


def route_digest(route: ModelRoute) -> bytes:
    up = route.upstream
    identity = {
        "served_name": route.served_name,
        "upstream": [up.type, sorted(up.urls), {k: v for k, v in sorted(up.options.items()) if k not in _OPERATIONAL}],
        "options": {k: v for k, v in sorted(route.options.items()) if k not in _OPERATIONAL_ROUTE},
        "prompts": dict(route.prompts) if route.prompts is not None else None,
        "truncation": route.truncation,
        "token_ids": route.token_ids,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).digest()


def item_keys(digest: bytes, inputs: Sequence[Any], is_tokens: bool) -> list[bytes]:
    """One key per input: text as UTF-8, token ids as int64, each after the route's digest."""
    keys = []
    for item in inputs:
        data = np.asarray(item, dtype=np.int64).tobytes() if is_tokens else str(item).encode("utf-8")
        keys.append(hashlib.blake2b(data, digest_size=20, key=digest[:32], person=b"ids" if is_tokens else b"text")
                    .digest())
    return keys
