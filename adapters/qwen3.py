"""Adapter type ``qwen3``: a remote OpenAI-compatible API serving Qwen3 embedding models.

Active only with ``QWEN3_ENABLED=true``; otherwise its models do not exist (404). Calls carry
``Authorization: Bearer $QWEN3_API_KEY``; the key is never logged, and is scrubbed from any
upstream message before it reaches a client.

The upstream ``url`` is the API base, as an OpenAI client's ``base_url``
(``https://api.example.com/v1``): embeddings go to ``<url>/embeddings``, rerank (where the
upstream offers it) to ``<url>/rerank``. Upstream option ``encoding_format`` (``float``, the
form every OpenAI-compatible API supports; ``base64`` where the API has it, for speed).

Qwen3-Embedding wants queries prefixed with an instruction and documents not. Per model
(route ``options``): ``query_instruction: "<task>"`` prefixes every input with Qwen's template
``Instruct: <task>\\nQuery:``, or ``query_prefix`` gives the literal prefix. Give a query alias
the instruction and a document alias none, both with the same ``served_name``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adapters.http import HttpAdapter
from core import hookimpl
from core.adapters import AdapterContext, EmbedResult, RerankResult
from core.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from core.config import ModelRoute, Settings, UpstreamConfig
    from core.flow import Flow

log = logging.getLogger("maas.adapters.qwen3")


def query_prefix(route: "ModelRoute") -> str:
    """The text put before each input of this model ('' for none)."""
    instruction = route.options.get("query_instruction")
    prefix = route.options.get("query_prefix")
    if instruction is not None and prefix is not None:
        raise ConfigError(f"model {route.alias!r}: give 'query_instruction' or 'query_prefix', not both")
    for name, value in (("query_instruction", instruction), ("query_prefix", prefix)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"model {route.alias!r}: option {name!r} must be a string")
    if instruction:
        return f"Instruct: {instruction}\nQuery:"
    return prefix or ""


class Qwen3Adapter(HttpAdapter):
    type_name = "qwen3"

    @classmethod
    def is_enabled(cls, settings: "Settings") -> bool:
        return settings.qwen3_enabled

    def __init__(self, upstream: "UpstreamConfig", context: AdapterContext) -> None:
        key = context.settings.qwen3_api_key
        if key and any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise ConfigError("QWEN3_API_KEY contains control characters (not quoted here: it is a secret)")
        if not key:
            log.warning("QWEN3_ENABLED is set but QWEN3_API_KEY is empty: calls go without a key")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        super().__init__(upstream, context, headers=headers, secrets=[key] if key else [])

    def prepare(self, route: "ModelRoute") -> None:
        query_prefix(route)  # a bad option rejects the config, not the first request

    async def embed(self, route: "ModelRoute", inputs: Sequence[Any], flow: "Flow | None") -> EmbedResult:
        prefix = query_prefix(route)
        items: list[Any] = list(inputs)
        if prefix:
            if items and not isinstance(items[0], str):
                raise InvalidRequest(f"The model '{route.alias}' adds a query instruction to text; "
                                     "send text, not token ids", param="input")
            items = [prefix + text for text in items]
        # Token ids go through as they are: the OpenAI protocol takes them, in the model's own vocabulary.
        return await self.embed_at("/embeddings", route, items, flow)

    async def rerank(self, route: "ModelRoute", query: str, documents: Sequence[str],
                     flow: "Flow | None") -> RerankResult:
        return await self.rerank_at("/rerank", route, query, documents, flow)


@hookimpl
def register_adapters(register):
    register("qwen3", Qwen3Adapter)
