"""One error hierarchy for the whole gateway, translated to HTTP only at the edge.

    GatewayError                      500 server_error
    ├── InvalidRequest                400 invalid_request_error
    │   ├── PayloadTooLarge           413 (body size)
    │   ├── TokenLimitExceeded        413 (token limits)
    │   ├── TooLargeForDeadline       413 (more work than the model can do before the deadline)
    │   ├── RequestTimeout            408 (the body did not arrive within ROUTER_BODY_TIMEOUT_SECONDS)
    │   └── ClientClosedRequest       499 (the client left before its body arrived; logged only)
    ├── AuthError                     401 authentication_error
    ├── PermissionDenied              403 permission_error
    ├── ModelNotFound                 404 invalid_request_error / model_not_found
    ├── SpaceMismatch                 409 the model serves another embedding space than expected
    ├── RateLimited                   429 rate_limit_error (+ Retry-After)
    │   └── QuotaExceeded             429 quota_exceeded (Retry-After at the reset, x-should-retry: false)
    ├── ServiceUnavailable            503 overloaded / draining (+ Retry-After)
    ├── DeadlineExceeded              504 (the gateway's own work on the request outlived its timeout)
    └── UpstreamError                 502 upstream_error
        ├── UpstreamTimeout           504
        └── UpstreamRejected          the upstream's 4xx, normalised

Stages and adapters raise these; the HTTP edge (``core.http``) has the path's codec render them
(OpenAI's ``{"error": {"message", "type", "param", "code"}}`` unless the wire format has its own).
"""

from __future__ import annotations

import math
import random
import reprlib
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 30, 30
MAX_MESSAGE = 1000  # a config error's message is cut here: it reaches logs and terminals


def shown(value: Any) -> str:
    """The start of a value for a message, never built whole (it may be an alias bomb or megabytes long)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def retry_headers(seconds: float, *, jitter: float = 0.5) -> dict[str, str]:
    """``Retry-After`` (whole seconds, as HTTP has it) and ``retry-after-ms``, which OpenAI's SDKs
    read first. The milliseconds are spread over [1, 1 + jitter] × the wait, so clients refused
    together do not all come back in the same instant."""
    wait = max(0.0, seconds)
    spread = wait * (1.0 + jitter * random.random())  # noqa: S311 - jitter, not a secret
    return {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, math.ceil(spread * 1000)))}


class GatewayError(Exception):
    status = 500
    type = "server_error"
    default_code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        """The error as OpenAI's JSON ``{"error": {...}}`` (a codec may render its own shape)."""
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class TokenLimitExceeded(InvalidRequest):
    status = 413
    default_code = "token_limit_exceeded"


class TooLargeForDeadline(InvalidRequest):
    """Even the idle model could not finish the request before its deadline: sent again as it is,
    it fails again, so clients are told not to retry (OpenAI's SDKs read ``x-should-retry``)."""

    status = 413
    default_code = "request_too_large_for_deadline"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("x-should-retry", "false")


class RequestTimeout(InvalidRequest):
    """The body promised by Content-Length (or chunks) did not arrive in time."""

    status = 408
    default_code = "request_timeout"


class ClientClosedRequest(InvalidRequest):
    """Nobody reads the answer; the status (nginx's 499) is for the access log and metrics."""

    status = 499
    default_code = "client_closed_request"


class AuthError(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"


class SpaceMismatch(GatewayError):
    """The route serves another embedding space than the request's ``X-Expect-Embedding-Space``
    (``core.space``): the same request gets the same answer until the client re-indexes, so it
    is told not to retry."""

    status = 409
    type = "invalid_request_error"
    default_code = "embedding_space_mismatch"

    def __init__(self, message: str, *, expected: str, serving: str, **kw: Any) -> None:
        super().__init__(message, param="X-Expect-Embedding-Space", **kw)
        self.expected, self.serving = expected, serving
        self.headers.setdefault("x-should-retry", "false")
        self.headers.setdefault("X-Embedding-Space", serving)


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        for name, value in retry_headers(retry_after).items():
            self.headers.setdefault(name, value)


class QuotaExceeded(RateLimited):
    """A key's quota for the day or the month is spent. Retrying soon cannot help: clients are
    told not to (``x-should-retry``, read by OpenAI's SDKs), and ``Retry-After`` is the reset,
    exact (no jitter: a spread of hours would be arbitrary)."""

    default_code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        headers = dict(kw.pop("headers", None) or {})
        wait = max(0.0, retry_after)
        headers.setdefault("Retry-After", str(max(1, math.ceil(wait))))
        headers.setdefault("retry-after-ms", str(max(1, math.ceil(wait * 1000))))
        headers.setdefault("x-should-retry", "false")
        super().__init__(message, retry_after=retry_after, headers=headers, **kw)


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        for name, value in retry_headers(retry_after).items():
            self.headers.setdefault(name, value)


class DeadlineExceeded(GatewayError):
    status = 504
    default_code = "request_timeout"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request (its 4xx); we pass its status on, normalised."""

    type = "invalid_request_error"
    default_code = "upstream_rejected"

    def __init__(self, message: str, *, status: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status if 400 <= status < 500 else 400


class ConfigError(Exception):
    """A configuration file is invalid; carries file and line for the operator."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 3] + "..."
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")
        self.message = message
