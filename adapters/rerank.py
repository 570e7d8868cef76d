"""Adapter type ``rerank``: the rerank service (``maas serve-rerank``, port 9002).

The upstream ``url`` is the service root (``http://rerank:9002``); calls go to
``<url>/rerank`` with the route's ``served_name`` as the model, which the service must
answer to (its RERANK_MODEL_NAME or an alias in RERANK_MODEL_MAPPING). The router asks for
every document's score and applies ``top_n`` / ``max_top_k`` itself.

Upstream options: ``path`` (``/rerank``), plus the resilience options of
``adapters.http.upstream``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from adapters.http import HttpAdapter, resilience_options
from core import hookimpl
from core.adapters import AdapterContext, CallContext, RerankResult
from core.kinds import RERANK
from core.options import Option, OptionSchema

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig


class RerankServiceAdapter(HttpAdapter):
    type_name = "rerank"
    kinds = frozenset({RERANK})
    upstream_options = resilience_options("float") | OptionSchema([
        Option("path", str, "/rerank", "the service's rerank path"),
        Option("max_documents", int, 50, "the service's RERANK_MAX_DOCUMENTS: a longer list (long documents "
                                         "read in windows) goes as several calls", minimum=1),
    ])

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        super().__init__(upstream, context)
        self.path = "/" + str(self.config["path"]).strip("/")
        self.max_documents = int(self.config["max_documents"])

    async def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
                     call: CallContext) -> RerankResult:
        step = self.max_documents
        if len(documents) <= step:
            return await self.rerank_at(self.path, route, query, documents, call)
        parts = await asyncio.gather(*(self.rerank_at(self.path, route, query, documents[i:i + step], call)
                                       for i in range(0, len(documents), step)))
        tokens = [p.prompt_tokens for p in parts]
        return RerankResult(scores=[s for p in parts for s in p.scores],
                            prompt_tokens=None if None in tokens else sum(t for t in tokens if t is not None))


@hookimpl
def register_adapters(register) -> None:
    register("rerank", RerankServiceAdapter)
