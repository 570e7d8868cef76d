"""Adapter type ``infinity``: an infinity-emb server (``infinity_emb v2 ... --url-prefix /v1``).

The upstream ``url`` is the server root (``http://infinity-embed:7997``); calls go to
``<url><url_prefix>/embeddings`` and ``<url><url_prefix>/rerank`` with the route's
``served_name`` as the model. Infinity answers any model name while it serves one model,
so the router's own route table is what decides which names exist.

Upstream options: ``url_prefix`` (``/v1``), ``encoding_format`` (``base64``: Infinity encodes
and we decode base64 float32 several times faster than JSON floats), plus the resilience
options of ``adapters.http.upstream``.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from adapters.http import HttpAdapter, resilience_options
from core import hookimpl
from core.adapters import AdapterContext, CallContext, EmbedResult, RerankResult
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig


class InfinityAdapter(HttpAdapter):
    type_name = "infinity"
    upstream_options = resilience_options("base64") | OptionSchema([
        Option("url_prefix", str, "/v1", "the server's --url-prefix", changes_space=False),
    ])

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        super().__init__(upstream, context)
        self.prefix = "/" + str(self.config["url_prefix"]).strip("/")
        self.prefix = "" if self.prefix == "/" else self.prefix

    # the calls themselves are ``embed_at``'s and ``rerank_at``'s: handed back to await, no coroutine of their own
    def embed(self, route: ModelRoute, inputs: Sequence[Any], call: CallContext) -> Coroutine[Any, Any, EmbedResult]:
        return self.embed_at(f"{self.prefix}/embeddings", route, self.texts(route, inputs, call), call)

    def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
               call: CallContext) -> Coroutine[Any, Any, RerankResult]:
        return self.rerank_at(f"{self.prefix}/rerank", route, query, documents, call, return_documents=False)


@hookimpl
def register_adapters(register) -> None:
    register("infinity", InfinityAdapter)
