"""Stage ``parse``: read the body and parse it strictly into the typed request.

It runs after auth and rate limiting, so a caller without a valid key, or over its limit, is
turned away before its body is read or parsed.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from core import hookimpl
from core.errors import InvalidRequest
from core.flow import Flow
from core.protocol import parse_embeddings, parse_rerank
from core.requests import ModelRequest

_PARSERS: dict[str, Callable[..., ModelRequest]] = {"embeddings": parse_embeddings, "rerank": parse_rerank}


class ParseStage:
    name = "parse"

    def __init__(self, max_inputs: int) -> None:
        self.max_inputs = max_inputs

    async def __call__(self, flow: Flow) -> None:
        if flow.request is not None:  # built in-process (tests, embedding callers)
            return
        raw = await flow.read_body() if flow.read_body is not None else b""
        if not raw:
            raise InvalidRequest("Request body is empty; send a JSON object")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
        flow.request = _PARSERS[flow.kind](body, max_inputs=self.max_inputs)


@hookimpl
def register_stages(register, settings):
    register(ParseStage(settings.max_inputs))
