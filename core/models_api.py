"""``/v1/models`` and ``/v1/models/{id}``: what the caller may call, and what each model is.

While auth.yaml lists keys, both need one (the chain's own ``auth`` stage decides, so a
replaced auth stage applies here too), and list only the models that key may call; another
model is a 404, as if it did not exist. The detail says what a client needs to use a model
well: its kind, vector width, input limit and the input types its prompts accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import ModelNotFound
from core.flow import Caller, Flow

if TYPE_CHECKING:
    from aiohttp import web

    from core.config import ModelRoute
    from core.gateway import Gateway
    from core.snapshot import Snapshot


async def _caller(gw: Gateway, snapshot: Snapshot, request: web.Request, request_id: str) -> Caller | None:
    flow = Flow(kind="models", snapshot=snapshot, request_id=request_id, client_ip=request.remote or "unknown",
                headers=request.headers)
    await gw.chain.find("auth")(flow)
    return flow.caller


def _visible(gw: Gateway, route: ModelRoute, caller: Caller | None) -> bool:
    if not route.enabled and not gw.settings.allow_disabled_models:
        return False
    return caller is None or caller.allowed_models is None or route.alias in caller.allowed_models


def _entry(snapshot: Snapshot, route: ModelRoute) -> dict[str, Any]:
    return {"id": route.alias, "object": "model", "created": int(snapshot.loaded_at), "owned_by": route.owned_by,
            "type": route.kind, "enabled": route.enabled}


async def models_body(gw: Gateway, request: web.Request, request_id: str) -> dict[str, Any]:
    snapshot = gw.snapshot
    if snapshot is None:
        return {"object": "list", "data": []}
    caller = await _caller(gw, snapshot, request, request_id)
    data = [_entry(snapshot, r) for r in snapshot.routes.values() if _visible(gw, r, caller)]
    return {"object": "list", "data": data}


async def model_body(gw: Gateway, request: web.Request, request_id: str, model_id: str) -> dict[str, Any]:
    snapshot = gw.snapshot
    route = snapshot.routes.get(model_id) if snapshot is not None else None
    caller = await _caller(gw, snapshot, request, request_id) if snapshot is not None else None
    if snapshot is None or route is None or not _visible(gw, route, caller):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    adapter = snapshot.adapters[route.alias]
    facts = adapter.describe(route)
    body = _entry(snapshot, route)
    body.update(served_by=route.upstream.type, dimensions=route.dimensions or facts.get("dimensions"),
                max_input_tokens=route.max_input_tokens or facts.get("max_input_tokens"),
                input_types=sorted(set(route.prompts) - {"default"}) if route.prompts is not None else [],
                allow_dimensions=route.allow_dimensions if route.kind == "embeddings" else None,
                max_top_k=route.max_top_k)
    return body
