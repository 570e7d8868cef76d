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
from typing import TYPE_CHECKING, Any

from adapters.http import HttpAdapter
from core import hookimpl
from core.adapters import AdapterContext, EmbedResult, RerankResult
from core.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig
    from core.flow import Flow


class RerankServiceAdapter(HttpAdapter):
    type_name = "rerank"

    def __init__(self, upstream: "UpstreamConfig", context: AdapterContext) -> None:
        super().__init__(upstream, context)
        self.path = "/" + str(upstream.options.get("path", "/rerank")).strip("/")

    def prepare(self, route: "ModelRoute") -> None:
        if route.kind != "rerank":
            raise ConfigError(f"model {route.alias!r}: upstream type 'rerank' serves rerank models only")

    async def embed(self, route: "ModelRoute", inputs: Sequence[Any], flow: "Flow | None") -> EmbedResult:
        raise InvalidRequest(f"The model '{route.alias}' is served by a rerank service; use /v1/rerank",
                             param="model", code="wrong_model_type")

    async def rerank(self, route: "ModelRoute", query: str, documents: Sequence[str],
                     flow: "Flow | None") -> RerankResult:
        return await self.rerank_at(self.path, route, query, documents, flow)


@hookimpl
def register_adapters(register):
    register("rerank", RerankServiceAdapter)
