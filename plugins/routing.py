"""Stage ``route``: resolve the model alias to a route and its adapter, and check the request fits it."""

from __future__ import annotations

from core import hookimpl
from core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from core.flow import Flow

_OTHER = {"embeddings": "/v1/rerank", "rerank": "/v1/embeddings"}


class RouteStage:
    name = "route"

    async def __call__(self, flow: Flow) -> None:
        alias = flow.request.model
        route = flow.snapshot.routes.get(alias)
        if route is None or not route.enabled:
            raise ModelNotFound(f"The model '{alias}' does not exist or is not enabled", param="model")
        if route.kind != flow.kind:
            raise InvalidRequest(f"The model '{alias}' is a {route.kind} model; use {_OTHER[flow.kind]}",
                                 param="model", code="wrong_model_type")
        caller = flow.caller
        if caller is not None and caller.allowed_models is not None and alias not in caller.allowed_models:
            raise PermissionDenied(f"This API key may not use the model '{alias}'", param="model")
        if flow.kind == "embeddings" and flow.request.dimensions is not None and not route.allow_dimensions:
            raise InvalidRequest(f"The model '{alias}' does not support 'dimensions'", param="dimensions")
        flow.route = route
        flow.adapter = flow.snapshot.adapters[alias]


@hookimpl
def register_stages(register):
    register(RouteStage())
