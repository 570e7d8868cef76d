"""The HTTP edge: aiohttp app, request ids, body limits and error translation.

Every API path is served by a codec the gateway's plugins registered (``core.dialects``): the
chain runs over the parsed request and ends in a typed outcome, which the path's codec renders
(``Gateway.handle``), as it renders the errors here.
Errors are shaped by the codec of their path (Cohere's on its own paths, OpenAI's everywhere
else), aiohttp's own 404/405 included.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from aiohttp import ClientPayloadError, web

from core import deadlines, ids
from core.answer import JsonAnswer
from core.cors import Cors
from core.dialects import Codec, CodecRegistry
from core.docs_page import add_docs_routes
from core.errors import ClientClosedRequest, GatewayError, PayloadTooLarge, RequestTimeout, ServiceUnavailable
from core.flow import Flow
from core.gateway import Gateway
from core.logs import access_log, request_id_var
from core.models_api import callable_models, model_body, models_body
from core.offload import off_loop
from core.openapi import openapi_document, with_models
from core.routes import RouteTable
from core.serving import DRAIN

log = logging.getLogger("maas.http")

GATEWAY = web.AppKey("gateway", Gateway)
CODECS = web.AppKey("codecs", CodecRegistry)  # error shapes by path (absent: OpenAI's everywhere)
CORS = web.AppKey("cors", Cors)  # set only when ROUTER_CORS_ORIGINS names origins
REQUEST_ID = web.RequestKey("request_id", str)
LOG_EXTRA = web.RequestKey("log_extra", dict)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_JSON = "application/json"
STARTING_WAIT_S = 5.0  # how long a request waits for the first config load before a 503

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _dumps(body: object) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(body), status=status,
                        content_type=_JSON, headers=headers)


def error_body(exc: GatewayError, codecs: CodecRegistry | None, path: str) -> tuple[bytes, bool]:
    """The error's JSON in the shape of the path's codec, and whether the connection must close
    after it (it is in an unknown state: a body half read)."""
    body = codecs.error_body(path, exc) if codecs is not None else exc.to_body()
    return _dumps(body), exc.headers.get("Connection") == "close"


def error_response(exc: GatewayError, codecs: CodecRegistry | None = None, path: str = "") -> web.Response:
    body, close = error_body(exc, codecs, path)
    response = web.Response(body=body, status=exc.status, content_type=_JSON, headers=exc.headers)
    if close:
        response.force_close()
    return response


def request_id(incoming: str) -> str:
    """The caller's ``X-Request-ID`` when it is safe to log and echo, else a new one."""
    return incoming if _SAFE_ID.match(incoming) else ids.token()


_HTTP_ERRORS = {404: ("Unknown route", "not_found"), 405: ("Method not allowed", "method_not_allowed"),
                403: ("Origin not allowed", "cors_origin_not_allowed")}
_UNLOGGED = ("/health", "/metrics")  # probes and scrapes: no access-log line


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id in and out, errors in OpenAI shape, one access-log line per request."""
    rid = request[REQUEST_ID] = request_id(request.headers.get("X-Request-ID", ""))
    token = request_id_var.set(rid)
    started = time.perf_counter()
    app = request.app  # found through the match info: once per request, not per lookup
    try:
        cors = app.get(CORS)
        try:
            response = (cors.preflight(request) if cors is not None else None) or await handler(request)
        except GatewayError as exc:
            response = error_response(exc, app.get(CODECS), request.path)
        except web.HTTPException as exc:
            message, code = _HTTP_ERRORS.get(exc.status, (exc.reason, "http_error"))
            err = GatewayError(f"{message}: {request.method} {request.path}", code=code)
            err.status, err.type = exc.status, "invalid_request_error"
            if "Allow" in exc.headers:  # a 405 says which methods the path takes
                err.headers["Allow"] = exc.headers["Allow"]
            response = error_response(err, app.get(CODECS), request.path)
        except asyncio.CancelledError:
            # the client left: nginx's 499, for the log only
            log_access(request.method, request.path, 499, started, request.get(LOG_EXTRA))
            raise
        except Exception:
            log.exception("unhandled error")
            response = error_response(GatewayError("Internal server error"), app.get(CODECS), request.path)
        response.headers["X-Request-ID"] = rid
        drain = app.get(DRAIN)
        if drain is not None and drain.active:  # the client's next request goes to another replica
            response.force_close()
        if cors is not None:
            cors.decorate(request, response)
        log_access(request.method, request.path, response.status, started, request.get(LOG_EXTRA))
        return response
    finally:
        request_id_var.reset(token)


def log_access(method: str, path: str, status: int, started: float, extra: dict | None) -> None:
    """The request's access-log line (none for probes and scrapes); ``extra``: what the gateway
    knows of it (model, caller, tokens)."""
    if not path.startswith(_UNLOGGED):
        access_log.request(method, path, status, started, extra)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The request body, or PayloadTooLarge past ``limit`` bytes (checked before reading), or
    RequestTimeout when it does not arrive within ``timeout_s``: a body promised and never sent
    must not hold a connection (and a request slot) open."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
    try:
        if request.content.is_eof():  # the whole body came with the head (a small one): no wait to bound
            return await request.read()
        with deadlines.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise late_body(timeout_s) from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes") from None
    except (ConnectionResetError, ClientPayloadError):  # the client hung up mid-body
        raise ClientClosedRequest("The client closed the connection before sending the whole body") from None


def late_body(timeout_s: float) -> RequestTimeout:
    """The refusal of a body that did not all arrive in time; the connection closes after it."""
    return RequestTimeout(f"The request body did not arrive within {timeout_s:g} s (ROUTER_BODY_TIMEOUT_SECONDS)",
                          headers={"Connection": "close"})


async def run_codec(gw: Gateway, codec: Codec, rid: str, client_ip: str, headers: Any,
                    read: bytes | Callable[[], Awaitable[bytes]],
                    extra: dict[str, Any]) -> tuple[bytes, dict[str, str] | None]:
    """One request on a codec's path through the gateway: its answer's JSON and headers. ``read``:
    the body as the lean lane read it, or how to read it (aiohttp's). ``extra`` gets the access
    log's fields, also when the request fails."""
    if gw.snapshot is None:
        # A replica that opened its port a moment before its config loaded (a restart behind a
        # front that checks no readiness): a short wait serves the request instead of a 503.
        try:
            await asyncio.wait_for(gw.loaded.wait(), STARTING_WAIT_S)
        except TimeoutError:
            raise ServiceUnavailable("The gateway is starting; retry shortly") from None
    # No await between taking the snapshot and gw.handle pinning its adapters: a reload in
    # between could retire (close) an adapter this request is about to use.
    snapshot = gw.snapshot
    if snapshot is None:  # the first load failed meanwhile: the process is stopping
        raise ServiceUnavailable("The gateway is starting; retry shortly")
    flow = Flow(kind=codec.kind, snapshot=snapshot, request_id=rid, client_ip=client_ip, headers=headers,
                codec=codec, read_body=read)
    try:
        await gw.handle(flow)
    finally:
        extra.update(model=flow.model.alias if flow.model else None, caller=flow.caller.name if flow.caller else None,
                     tokens=flow.usage_tokens)
    if not flow.big_answer:
        return _dumps(flow.response), flow.response_headers or None
    # a big answer's JSON, off the loop
    return await off_loop(_dumps, flow.response, deadline=gw.deadline(flow)), flow.response_headers or None


def serve(codec: Codec) -> Handler:
    """The handler of one codec's path."""

    async def handler(request: web.Request) -> web.StreamResponse:
        gw = request.app[GATEWAY]
        settings = gw.settings
        extra = request[LOG_EXTRA] = {}
        body, headers = await run_codec(gw, codec, request[REQUEST_ID], request.remote or "unknown", request.headers,
                                        partial(read_body, request, settings.max_body_bytes, settings.body_timeout_s),
                                        extra)
        return JsonAnswer(body, headers)

    return handler


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if gw.ready:
        return json_response({"status": "ok"})
    state = "draining" if gw.draining else "starting"
    return json_response({"status": state}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def list_models(request: web.Request) -> web.Response:
    return json_response(await models_body(request.app[GATEWAY], request, request[REQUEST_ID]))


async def retrieve_model(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return json_response(await model_body(gw, request, request[REQUEST_ID], request.match_info["model_id"]))


#: the document names the caller's own models: never one key's answer for another
_PER_KEY = {"Cache-Control": "private, no-store", "Vary": "Authorization, X-API-Key"}


async def openapi_json(request: web.Request) -> web.Response:
    """The API's description, its model examples scoped as ``/v1/models`` is: a key's own models;
    none without a key while keys exist (the paths and schemas are the same for everyone)."""
    gw = request.app[GATEWAY]
    document = openapi_document(gw.codecs.codecs)
    extra = gw.routes.openapi_paths()
    if extra:
        document = {**document, "paths": {**document["paths"], **extra}}
    snapshot = gw.snapshot
    if snapshot is None:
        return json_response(document, headers=_PER_KEY)
    try:
        models = await callable_models(gw, snapshot, request, request[REQUEST_ID])
    except GatewayError:  # no key, or a refused one: the document, naming no model
        models = []
    aliases: dict[str, list[str]] = {}
    for model in models:
        aliases.setdefault(model.kind, []).append(model.alias)
    return json_response(with_models(document, gw.codecs, aliases), headers=_PER_KEY)


def metrics_app(gateway: Gateway) -> web.Application:
    """``/metrics`` alone, for ``ROUTER_METRICS_PORT``: key names and usage never on the API's port."""
    app = web.Application(middlewares=[edge_middleware])
    app[GATEWAY] = gateway
    app.router.add_get("/metrics", metrics)
    return app


def add_routes(app: web.Application, codecs: CodecRegistry, plugin_routes: RouteTable | None = None, *,
               with_metrics: bool = True) -> None:
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", retrieve_model)
    app.router.add_get("/openapi.json", openapi_json)
    add_docs_routes(app)
    for codec in codecs.codecs:
        app.router.add_post(codec.path, serve(codec))
    for route in plugin_routes.routes if plugin_routes is not None else ():
        app.router.add_route(route.method, route.path, route.handler)
    if with_metrics:  # else served on a port of its own (metrics_app)
        app.router.add_get("/metrics", metrics)
