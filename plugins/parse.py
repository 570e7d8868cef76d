"""Stage ``parse``: read the body and parse it strictly, with the path's codec, into the internal request.

It runs after auth and rate limiting, so a caller without a valid key, or over its limit, is
turned away before its body is read or parsed. A path two wire formats share (``/rerank``)
picks its codec by the body's keys here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from core import hookimpl
from core.dialects import ParseLimits
from core.errors import InvalidRequest
from core.flow import Flow

if TYPE_CHECKING:
    from core.config import Settings


class ParseStage:
    name = "parse"

    def __init__(self, max_inputs: int) -> None:
        self.limits = ParseLimits(max_inputs=max_inputs)

    async def __call__(self, flow: Flow) -> None:
        if flow.request is not None:  # built in-process (tests, embedding callers)
            return
        if flow.codec is None:
            raise RuntimeError("a flow without a request needs the codec of its path")
        raw = await flow.read_body() if flow.read_body is not None else b""
        if not raw:
            raise InvalidRequest("Request body is empty; send a JSON object")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
        codec = flow.codec.select(body)
        parsed = codec.parse(body, self.limits)
        flow.codec, flow.request, flow.wire = codec, parsed.request, parsed.state


@hookimpl
def register_stages(register, settings: Settings) -> None:
    register(ParseStage(settings.max_inputs))
