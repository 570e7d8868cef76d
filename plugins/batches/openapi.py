"""The OpenAPI operations of ``/v1/files`` and ``/v1/batches`` (listed in ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
FILE = {"type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose"],
        "properties": {"id": _STR, "object": {"const": "file"}, "bytes": _INT, "created_at": _INT,
                       "filename": _STR, "purpose": _STR, "status": _STR, "expires_at": _INT}}
BATCH = {"type": "object", "required": ["id", "object", "endpoint", "input_file_id", "completion_window", "status",
                                        "created_at", "request_counts"],
         "properties": {"id": _STR, "object": {"const": "batch"}, "endpoint": _STR, "input_file_id": _STR,
                        "completion_window": _STR, "status": {"enum": ["validating", "failed", "in_progress",
                                                                       "finalizing", "completed", "expired",
                                                                       "cancelling", "cancelled"]},
                        "output_file_id": {"type": ["string", "null"]}, "error_file_id": {"type": ["string", "null"]},
                        "created_at": _INT, "expires_at": _INT, "metadata": {"type": ["object", "null"]},
                        "request_counts": {"type": "object", "properties": {"total": _INT, "completed": _INT,
                                                                            "failed": _INT}}}}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": item},
                           "has_more": {"type": "boolean"}}}


def operation(op_id: str, summary: str, answer: dict[str, Any] | None, *, params: tuple[str, ...] = (),
              body: dict[str, Any] | None = None, errors: tuple[str, ...] = ("400", "401", "404"),
              query: tuple[str, ...] = ()) -> dict[str, Any]:
    content = {"application/json": {"schema": answer}} if answer is not None else {"application/jsonl": {}}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["batches"],
                          "responses": {"200": {"description": "OK", "content": content},
                                        **{code: {"description": "error",
                                                  "content": {"application/json": {"schema": _ERROR}}}
                                           for code in errors}}}
    parameters = [{"name": p, "in": "path", "required": True, "schema": _STR} for p in params]
    parameters += [{"name": q, "in": "query", "required": False, "schema": _INT if q == "limit" else _STR}
                   for q in query]
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


UPLOAD = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["purpose", "file"],
    "properties": {"purpose": {"const": "batch"},
                   "file": {"type": "string", "format": "binary",
                            "description": "JSONL: one {custom_id, method: POST, url, body} a line"}}}}}
CREATE = {"application/json": {"schema": {
    "type": "object", "required": ["input_file_id", "endpoint", "completion_window"], "additionalProperties": False,
    "properties": {"input_file_id": _STR, "endpoint": {"enum": ["/v1/embeddings", "/v2/embed"]},
                   "completion_window": {"const": "24h"},
                   "metadata": {"type": "object", "additionalProperties": _STR, "maxProperties": 16}}}}}
