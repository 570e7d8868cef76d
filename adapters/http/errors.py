"""Turn what an upstream said into the gateway's error hierarchy.

Upstreams speak three error dialects: Infinity's ``{"error": {"message", ..., "code": 400}}``,
FastAPI's ``{"detail": [{"loc", "msg"}, ...]}`` (or ``{"detail": "text"}``), and a flat
``{"message": "text"}``. Clients only ever see the OpenAI shape built by ``core.http``; the
upstream's body is read for its message and never passed through raw.

Status mapping (the client-facing status is what the client can act on):

* 400, 413, 422 (validation) → the same 4xx, 422 as 400 (OpenAI reports validation as 400);
* 429 → 429 with the upstream's Retry-After: the client should back off too;
* 401, 403, 404 and other 4xx → 502: the upstream refused *the gateway's* credentials, path or
  served model name, which is an operator's problem, not something the client sent;
* 503 → 503 with Retry-After (overloaded), 504 → 504, any other 5xx → 502.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import orjson

from core.errors import GatewayError, RateLimited, ServiceUnavailable, UpstreamError, UpstreamRejected, UpstreamTimeout

_MAX_MESSAGE = 500


log = logging.getLogger("maas.upstream")


def upstream_message(body: bytes) -> str | None:
    """The human-readable message inside an upstream error body, if there is one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_fastapi_item(item) for item in detail[:5])
    if isinstance(data.get("message"), str):
        return data["message"]
    return None


def _fastapi_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    # "body" and the union-branch names pydantic adds say nothing to a client.
    loc = [str(p) for p in item.get("loc", []) if p != "body" and not str(p).startswith(("list[", "constrained"))]
    msg = str(item.get("msg", "invalid value"))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


_MAX_RETRY_AFTER_S = 3600.0


def _retry_after(headers: Any) -> float:
    """The upstream's Retry-After in seconds, within [1, 3600]; 1 when absent or not a number."""
    try:
        value = float(headers.get("Retry-After", 1))
    except (TypeError, ValueError):
        return 1.0
    return min(max(1.0, value), _MAX_RETRY_AFTER_S) if math.isfinite(value) else 1.0


def _scrub(message: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message[:_MAX_MESSAGE]


def error_from_response(status: int, body: bytes, headers: Any, *, alias: str,
                        secrets: Iterable[str] = ()) -> GatewayError:
    """The GatewayError a client should see for an upstream's non-2xx answer."""
    detail = upstream_message(body)
    said = f": {_scrub(detail, secrets)}" if detail else ""
    if status in (400, 413, 422):
        return UpstreamRejected(f"The upstream for '{alias}' rejected the request{said}",
                                status=400 if status == 422 else status)
    if status == 429:
        return RateLimited(f"The upstream for '{alias}' is rate limiting{said}", retry_after=_retry_after(headers),
                           code="upstream_rate_limited")
    if 400 <= status < 500:
        # The gateway's own credentials or served name: the upstream's words (which may quote part
        # of a key) go to the operator's log, not to the client.
        log.warning("upstream refused the gateway's request (HTTP %d): %s", status, _scrub(detail or "", secrets),
                    extra={"model": alias})
        return UpstreamError(f"The upstream for '{alias}' refused the gateway's request (HTTP {status}); "
                             "see the gateway's log", code="upstream_misconfigured")
    if status == 503:
        return ServiceUnavailable(f"The upstream for '{alias}' is overloaded or unavailable{said}",
                                  retry_after=_retry_after(headers), code="upstream_unavailable")
    if status == 504:
        return UpstreamTimeout(f"The upstream for '{alias}' timed out (HTTP 504){said}")
    return UpstreamError(f"The upstream for '{alias}' failed (HTTP {status}){said}")
