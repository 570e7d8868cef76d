"""The OpenAI / Cohere wire formats: parse request bodies strictly into ``core.requests`` types."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest
from core.requests import EmbeddingInput, EmbeddingsRequest, RerankRequest
from core.responses import embeddings_body, rerank_body, shape_vectors

__all__ = ["embeddings_body", "parse_embeddings", "parse_rerank", "rerank_body", "shape_vectors"]


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    return model


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def parse_embeddings(body: Any, *, max_inputs: int) -> EmbeddingsRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = _model(body)
    raw = body.get("input")
    is_tokens = False
    if isinstance(raw, str):
        inputs: EmbeddingInput = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = raw
    elif isinstance(raw, list) and raw and _is_int_list(raw):
        inputs, is_tokens = [raw], True
    elif isinstance(raw, list) and raw and all(_is_int_list(x) for x in raw):
        inputs, is_tokens = raw, True
    elif raw is None:
        raise InvalidRequest("'input' is required", param="input")
    elif isinstance(raw, list) and not raw:
        raise InvalidRequest("'input' must not be empty", param="input")
    else:
        raise InvalidRequest("'input' must be a string, a list of strings, a list of token ids "
                             "or a list of lists of token ids", param="input")
    if len(inputs) > max_inputs:
        raise InvalidRequest(f"'input' has {len(inputs)} items; at most {max_inputs} are allowed", param="input")
    for i, item in enumerate(inputs):
        if len(item) == 0:
            raise InvalidRequest(f"'input[{i}]' is empty", param="input")
        if is_tokens and any(t < 0 for t in item):  # type: ignore[operator]
            raise InvalidRequest(f"'input[{i}]' has a negative token id", param="input")
    fmt = body.get("encoding_format", "float")
    if fmt is None:
        fmt = "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string", param="user")
    return EmbeddingsRequest(model=model, inputs=inputs, is_tokens=is_tokens, encoding_format=fmt,
                             dimensions=dims, user=user)


def parse_rerank(body: Any, *, max_inputs: int) -> RerankRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = _model(body)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("'query' is required and must be a non-empty string", param="query")
    docs = body.get("documents")
    if not isinstance(docs, list):
        raise InvalidRequest("'documents' is required and must be a list", param="documents")
    if not docs:
        raise InvalidRequest("'documents' must not be empty", param="documents")
    if len(docs) > max_inputs:
        raise InvalidRequest(f"'documents' has {len(docs)} items; at most {max_inputs} are allowed",
                             param="documents")
    texts: list[str] = []
    for i, doc in enumerate(docs):
        if isinstance(doc, dict):
            doc = doc.get("text")
        if not isinstance(doc, str):
            raise InvalidRequest(f"'documents[{i}]' must be a string or an object with a string 'text'",
                                 param="documents")
        if not doc.strip():
            raise InvalidRequest(f"'documents[{i}]' is empty", param="documents")
        texts.append(doc)
    top_n = body.get("top_n")
    if top_n is None:
        top_n = body.get("top_k")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        param = "top_n" if body.get("top_n") is not None else "top_k"
        raise InvalidRequest(f"'{param}' must be a positive integer", param=param)
    ret = body.get("return_documents", False)
    if not isinstance(ret, bool):
        raise InvalidRequest("'return_documents' must be a boolean", param="return_documents")
    return RerankRequest(model=model, query=query, documents=texts, top_n=top_n, return_documents=ret)
