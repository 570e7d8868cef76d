"""``/openapi.json``: OpenAPI 3.1, generated from the served codecs' field tables (the same tables
that validate the bodies) and error schemas, so the description cannot drift from what the
parsers accept, a third party's wire formats included."""

from __future__ import annotations

import copy
import functools
from typing import Any

from core.dialects import Codec, CodecRegistry
from core.dialects.base import OPENAI_ERROR_SCHEMA
from core.kinds import EMBEDDINGS
from core.version import version

_STATUSES = {"400": "bad input", "401": "no or invalid API key", "403": "the key may not use the model",
             "404": "unknown or disabled model", "413": "body or token limit", "429": "rate limited",
             "502": "upstream failed", "503": "starting, draining or overloaded", "504": "upstream timeout"}


def _errors(schema_name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {code: {"description": why, "content": {"application/json": {"schema": ref}}}
            for code, why in _STATUSES.items()}


_SPACE = {"X-Embedding-Space": {"description": "the embedding space of the vectors (es1- and 16 hex digits; one "
                                                "per output type, comma-separated); see /v1/models/{model_id}",
                                 "schema": {"type": "string"}},
          "X-Cache-Hits": {"description": "inputs the embedding cache served from this key's own entries",
                           "schema": {"type": "integer"}}}
_EXPECT = {"name": "X-Expect-Embedding-Space", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "the space the client's index is in: another one is a 409 (x-should-retry: false), "
                          "before any vector is computed"}


def _operation(codec: Codec) -> dict[str, Any]:
    options = codec.alternatives()
    schemas = [c.fields.schema() for c in options]
    request = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    answers = [c.response_schema for c in options]
    response = answers[0] if len(answers) == 1 else {"oneOf": answers}
    op: dict[str, Any] = {
        "operationId": codec.name, "summary": codec.summary, "tags": [codec.kind],
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response}}},
                      **_errors(codec.error_schema[0])}}
    if codec.kind == EMBEDDINGS:
        op["parameters"] = [_EXPECT]
        op["responses"]["200"]["headers"] = _SPACE
        op["responses"]["409"] = {**op["responses"]["400"], "description": "another embedding space than expected"}
    return op


def _get(operation_id: str, summary: str, schema: dict[str, Any], *, errors: bool = True,
         parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                          "responses": {"200": {"description": "OK",
                                                "content": {"application/json": {"schema": schema}}}}}
    if errors:
        op["responses"].update({k: v for k, v in _errors("Error").items() if k in ("401", "404")})
    if parameters:
        op["parameters"] = parameters
    return op


_MODEL = {"type": "object", "required": ["id", "object", "created", "owned_by"],
          "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                         "owned_by": {"type": "string"}}}
_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
_FIGURES = {"type": "object", "required": ["used", "limit", "remaining"],
            "properties": {"used": {"type": "integer"}, "limit": {"type": ["integer", "null"]},
                           "remaining": {"type": ["integer", "null"]}}}
_USAGE = {"type": "object", "required": ["object", "key", "periods"], "properties": {
    "object": {"const": "usage"}, "key": {"type": "string", "description": "the key's name"},
    "periods": {"type": "array", "items": {
        "type": "object", "required": ["period", "start", "resets_at", "tokens", "requests"],
        "properties": {"period": {"enum": ["day", "month"]}, "start": {"type": "string", "format": "date-time"},
                       "resets_at": {"type": "string", "format": "date-time"}, "tokens": _FIGURES,
                       "requests": _FIGURES}}}}}


def with_models(document: dict[str, Any], codecs: CodecRegistry, aliases: dict[str, list[str]]) -> dict[str, Any]:
    """The document with the serving models' aliases as examples of each ``model`` field."""
    doc = copy.deepcopy(document)
    for path, ops in doc["paths"].items():
        codec = codecs.by_path.get(path)
        if codec is None or not aliases.get(codec.kind):
            continue
        schema = ops["post"]["requestBody"]["content"]["application/json"]["schema"]
        for option in schema.get("oneOf", [schema]):
            model = option["properties"].get("model")
            if model is not None:
                target = model["anyOf"][0] if "anyOf" in model else model
                target["examples"] = aliases[codec.kind]
    return doc


@functools.cache
def openapi_document(codecs: tuple[Codec, ...]) -> dict[str, Any]:
    """The document for these codecs (kept per tuple: a gateway's codecs are fixed at start)."""
    paths: dict[str, Any] = {c.path: {"post": _operation(c)} for c in codecs}
    paths["/v1/models"] = {"get": _get("listModels", "The models this key may call", {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _MODEL}}})}
    paths["/v1/models/{model_id}"] = {"get": _get("retrieveModel", "One model: kind, dimensions, input limit, "
                                                  "input types", _MODEL, parameters=[
        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}])}
    paths["/v1/usage"] = {"get": _get("usage", "This key's own usage and remaining quota for the current UTC day "
                                      "and month", _USAGE)}
    paths["/health/live"] = {"get": _get("live", "200 while the process serves", _STATUS, errors=False)}
    paths["/health/ready"] = {"get": _get("ready", "200 when serving; 503 while starting or draining", _STATUS,
                                          errors=False)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Quadrate MAAS Embeddings", "version": version(),
                 "description": "Embeddings and reranking in the OpenAI, Cohere, Voyage, Jina and TEI wire formats."},
        "paths": paths,
        "components": {
            "schemas": {"Error": OPENAI_ERROR_SCHEMA,
                        **{name: schema for c in codecs for name, schema in [c.error_schema]}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}, {}],
    }
