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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.http import HttpAdapter
from core import hookimpl
from core.adapters import AdapterContext, CallContext, EmbedResult, RerankResult
from core.config.sections import EnvOption, SettingsSection
from core.errors import ConfigError, InvalidRequest
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.config import ModelRoute, Settings, UpstreamConfig

log = logging.getLogger("maas.adapters.qwen3")


@dataclass(frozen=True, slots=True)
class Qwen3Settings:
    enabled: bool = False
    api_key: str | None = field(default=None, repr=False)


SETTINGS = SettingsSection(Qwen3Settings, (
    EnvOption("QWEN3_ENABLED", "enabled", "bool", False, "serve the qwen3 routes (else their models do not exist)"),
    EnvOption("QWEN3_API_KEY", "api_key", "str", None, "the remote Qwen3 API's key (Bearer)", secret=True),
), title="qwen3 adapter")


def query_prefix(route: ModelRoute) -> str:
    """The text put before each input of this model ('' for none)."""
    instruction = route.options.get("query_instruction")
    if instruction:
        return f"Instruct: {instruction}\nQuery:"
    return str(route.options.get("query_prefix") or "")


class Qwen3Adapter(HttpAdapter):
    type_name = "qwen3"
    route_options = OptionSchema([
        Option("query_instruction", str, None, "task put in Qwen's template 'Instruct: <task>\\nQuery:'"),
        Option("query_prefix", str, None, "a literal prefix for every input (instead of query_instruction)"),
    ])

    @classmethod
    def is_enabled(cls, settings: Settings) -> bool:
        return settings.of(Qwen3Settings).enabled

    @classmethod
    def validate_route(cls, route: ModelRoute) -> None:
        super().validate_route(route)
        if route.options.get("query_instruction") is not None and route.options.get("query_prefix") is not None:
            raise ValueError("give 'query_instruction' or 'query_prefix', not both")

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        key = context.settings.of(Qwen3Settings).api_key
        if key and any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise ConfigError("QWEN3_API_KEY contains control characters (not quoted here: it is a secret)")
        if not key:
            log.warning("QWEN3_ENABLED is set but QWEN3_API_KEY is empty: calls go without a key")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        super().__init__(upstream, context, headers=headers, secrets=[key] if key else [])

    async def embed(self, route: ModelRoute, inputs: Sequence[Any], call: CallContext) -> EmbedResult:
        prefix = query_prefix(route)
        items: list[Any] = list(inputs)
        if prefix:
            if call.is_tokens:
                raise InvalidRequest(f"The model '{route.alias}' adds a query instruction to text; "
                                     "send text, not token ids", param="input")
            items = [prefix + text for text in items]
        # Token ids go through as they are: the OpenAI protocol takes them, in the model's own vocabulary.
        return await self.embed_at("/embeddings", route, items, call)

    async def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
                     call: CallContext) -> RerankResult:
        return await self.rerank_at("/rerank", route, query, documents, call)


@hookimpl
def register_settings(register) -> None:
    register(SETTINGS)


@hookimpl
def register_adapters(register) -> None:
    register("qwen3", Qwen3Adapter)
