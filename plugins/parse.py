"""Stage ``parse``: read the body and parse it strictly, with the path's codec, into the internal request.

It runs after auth and rate limiting, so a caller without a valid key, or over its limit, is
turned away before its body is read or parsed. A path two wire formats share (``/rerank``)
picks its codec by the body's keys here. A body over ``core.offload.INLINE_BYTES`` is parsed off
the event loop; every request is held to the input caps (``core.config.caps``) before any later
stage reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from core import hookimpl
from core.config.caps import DEFAULT_CAPS, InputCaps
from core.dialects import Codec, ParseLimits
from core.errors import InvalidRequest
from core.flow import Flow
from core.offload import INLINE_BYTES, off_loop

if TYPE_CHECKING:
    from core.config import Settings
    from core.requests import ModelRequest


class ParseStage:
    name = "parse"

    def __init__(self, max_inputs: int, caps: InputCaps = DEFAULT_CAPS, timeout_s: float = 30.0) -> None:
        self.limits = ParseLimits(max_inputs=max_inputs)
        self.caps = caps
        self.timeout_s = timeout_s

    async def __call__(self, flow: Flow) -> None:
        if flow.request is not None:  # built in-process (tests, embedding callers)
            return
        if flow.codec is None:
            raise RuntimeError("a flow without a request needs the codec of its path")
        given = flow.read_body  # the lean lane's whole body, or aiohttp's reader of it
        raw = given if isinstance(given, bytes) else await given() if given is not None else b""
        if not raw:
            raise InvalidRequest("Request body is empty; send a JSON object")
        codec = flow.codec
        if len(raw) < INLINE_BYTES:
            parsed = self._parse(codec, raw)
        else:  # a big body is parsed and checked off the event loop, within the request's timeout
            parsed = await off_loop(self._parse, codec, raw, deadline=flow.deadline(self.timeout_s))
        flow.codec, flow.request, flow.wire = parsed

    def _parse(self, codec: Codec, raw: bytes) -> tuple[Codec, ModelRequest, object]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
        self.caps.check_id_arrays(body)  # by lengths alone, before the codec reads every id
        if type(codec).select is not Codec.select:  # a path two formats share picks by the body's keys
            codec = codec.select(body)
        parsed = codec.parse(body, self.limits)
        parsed.request.check_caps(self.caps)  # before any stage reads more of it than its size
        return codec, parsed.request, parsed.state


@hookimpl
def register_stages(register, settings: Settings) -> None:
    register(ParseStage(settings.max_inputs, settings.caps, settings.request_timeout_s))
