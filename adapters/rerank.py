"""Adapter type ``rerank``: the rerank service (``maas serve-rerank``, port 9002).

The upstream ``url`` is the service root (``http://rerank:9002``); calls go to
``<url>/rerank`` with the route's ``served_name`` as the model, which the service must
answer to (its RERANK_MODEL_NAME or an alias in RERANK_MODEL_MAPPING). The router asks for
every document's score and applies ``top_n`` / ``max_top_k`` itself.

Upstream options: ``path`` (``/rerank``), plus the resilience options of
``adapters.http.upstream``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.http import HttpAdapter, resilience_options
from core import hookimpl
from core.adapters import AdapterContext, CallContext, RerankResult
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig


class RerankServiceAdapter(HttpAdapter):
    type_name = "rerank"
    kinds = frozenset({"rerank"})
    upstream_options = resilience_options("float") | OptionSchema([
        Option("path", str, "/rerank", "the service's rerank path"),
    ])

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        super().__init__(upstream, context)
        self.path = "/" + str(self.config["path"]).strip("/")

    async def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
                     call: CallContext) -> RerankResult:
        return await self.rerank_at(self.path, route, query, documents, call)


@hookimpl
def register_adapters(register) -> None:
    register("rerank", RerankServiceAdapter)
