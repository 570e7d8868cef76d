"""``/v1/models`` and ``/v1/models/{id}``: what the caller may call, and what each model is.

While auth.yaml lists keys, both need one, and list only the models that key may call; another
model is a 404, as if it did not exist. They run the chain's stages that apply to every request
(``auth``, whoever fills the slot, and any stage a plugin registered with ``every_request``),
not those of model calls: no body is read and no rate-limit budget is charged. The detail says
what a client needs to use a model well: its kind, vector width, input limit, the input types
its prompts accept and, for an embedding model, the embedding space of each (``core.space``: the
``X-Embedding-Space`` its answers carry at its width as float vectors), for a client to record
and pin with ``X-Expect-Embedding-Space``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import ModelNotFound
from core.flow import Caller, Flow
from core.kinds import EMBEDDINGS
from core.space import fingerprint

if TYPE_CHECKING:
    from aiohttp import web

    from core.gateway import Gateway
    from core.served import ServedModel
    from core.snapshot import Snapshot


async def _caller(gw: Gateway, snapshot: Snapshot, request: web.Request, request_id: str) -> Caller | None:
    flow = Flow(kind="models", snapshot=snapshot, request_id=request_id, client_ip=request.remote or "unknown",
                headers=request.headers)
    await gw.chain.run(flow, common_only=True)
    return flow.caller


def _visible(gw: Gateway, model: ServedModel, caller: Caller | None) -> bool:
    if not model.route.enabled and not gw.settings.allow_disabled_models:
        return False
    return caller is None or caller.allowed_models is None or model.alias in caller.allowed_models


def _entry(snapshot: Snapshot, model: ServedModel) -> dict[str, Any]:
    route = model.route
    return {"id": route.alias, "object": "model", "created": int(snapshot.loaded_at), "owned_by": route.owned_by,
            "type": route.kind, "enabled": route.enabled}


async def callable_models(gw: Gateway, snapshot: Snapshot, request: web.Request,
                          request_id: str) -> list[ServedModel]:
    """The models this request's key may call, as ``/v1/models`` lists them (what the auth stage
    refuses is raised: no key while keys exist, a wrong one)."""
    caller = await _caller(gw, snapshot, request, request_id)
    return [m for m in snapshot.models.values() if _visible(gw, m, caller)]


async def models_body(gw: Gateway, request: web.Request, request_id: str) -> dict[str, Any]:
    snapshot = gw.snapshot
    if snapshot is None:
        return {"object": "list", "data": []}
    return {"object": "list", "data": [_entry(snapshot, m) for m in await callable_models(gw, snapshot, request,
                                                                                          request_id)]}


async def model_body(gw: Gateway, request: web.Request, request_id: str, model_id: str) -> dict[str, Any]:
    snapshot = gw.snapshot
    model = snapshot.models.get(model_id) if snapshot is not None else None
    caller = await _caller(gw, snapshot, request, request_id) if snapshot is not None else None
    if snapshot is None or model is None or not _visible(gw, model, caller):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    facts = model.facts
    body = _entry(snapshot, model)
    body.update(served_by=model.route.upstream.type, dimensions=facts.dimensions,
                max_input_tokens=facts.max_input_tokens, input_types=list(facts.input_types),
                allow_dimensions=facts.allow_dimensions if model.kind == EMBEDDINGS else None,
                max_top_k=facts.max_top_k)
    if model.kind == EMBEDDINGS:
        body.update(_spaces(model))
    return body


def _spaces(model: ServedModel) -> dict[str, Any]:
    """The space of a request naming no input type, and of each input type (None and {} while
    the width is unknown: a remote model before its first answer)."""
    width = model.width
    if width is None:
        return {"embedding_space": None, "embedding_spaces": {}}
    prompts = model.route.prompts
    default = prompts.get("default") if prompts is not None else None
    return {"embedding_space": fingerprint(model.space, default, {}, width),
            "embedding_spaces": {t: fingerprint(model.space, t, {}, width) for t in model.facts.input_types}}
