"""Stage ``route``: resolve the model alias to its served model, and check the request fits it.

It runs right after ``parse`` and before anything is counted: a request for a model that does
not exist, or that the caller may not use, costs no tokenization and no token budget.
"""

from __future__ import annotations

from collections.abc import Awaitable

from core import hookimpl
from core.chain import SETTLED
from core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from core.flow import Flow
from core.kinds import EMBEDDINGS, RERANK
from core.variant import DEFAULT_VARIANT

_OTHER = {EMBEDDINGS: "/v1/rerank", RERANK: "/v1/embeddings"}


class RouteStage:
    name = "route"

    def __call__(self, flow: Flow) -> Awaitable[None]:  # settles the flow without waiting: no coroutine
        req = flow.request if flow.request is not None else flow.parsed()  # ``parse`` ran before
        alias = req.model
        if alias is None:  # a dialect without a model field (TEI): the routing's default for the kind
            alias = flow.snapshot.files.routing.defaults.get(req.kind)
            if alias is None:
                raise InvalidRequest(f"'model' is required: routing.yaml names no default {req.kind} model",
                                     param="model")
            req.model = alias
        model = flow.snapshot.models.get(alias)
        if model is None or not model.route.enabled:
            raise ModelNotFound(f"The model '{alias}' does not exist or is not enabled", param="model")
        if model.kind != req.kind:
            raise InvalidRequest(f"The model '{alias}' serves {model.kind}, not {req.kind}; use {_OTHER[req.kind]}",
                                 param="model", code="wrong_model_type")
        caller = flow.caller
        if caller is not None and caller.allowed_models is not None and alias not in caller.allowed_models:
            raise PermissionDenied(f"This API key may not use the model '{alias}'", param="model")
        req.check_route(model.route)
        if req.variant is not DEFAULT_VARIANT:  # what the model must answer besides its default
            model.check_variant(req.variant)
        flow.model = model
        return SETTLED


@hookimpl
def register_stages(register) -> None:
    register(RouteStage())
