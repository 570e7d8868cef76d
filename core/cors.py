"""CORS for browser callers: off unless ``ROUTER_CORS_ORIGINS`` names origins (or ``*``).

A preflight (OPTIONS with ``Access-Control-Request-Method``) from an allowed origin is answered
204 here, before auth: browsers send preflights without credentials. One from any other origin
is a 403. Answers to allowed origins carry ``Access-Control-Allow-Origin`` and expose the
headers clients read (request id, retry and rate-limit headers). Credentials (cookies) are never
allowed: API keys travel in headers.
"""

from __future__ import annotations

from aiohttp import web

ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID, X-Priority, X-Expect-Embedding-Space"
EXPOSE_HEADERS = ("X-Request-ID, Retry-After, retry-after-ms, x-ratelimit-limit-requests, "
                  "x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
                  "x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, X-Truncated-Inputs, X-Chunked-Documents, "
                  "X-Cache-Hits, X-Embedding-Space")


class Cors:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins if o != "*")

    def allows(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a preflight, or None for any other request."""
        origin = request.headers.get("Origin")
        if origin is None or request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if not self.allows(origin):
            raise web.HTTPForbidden(reason="origin not allowed")
        return web.Response(status=204, headers={"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                                                 "Access-Control-Allow-Headers": ALLOW_HEADERS,
                                                 "Access-Control-Max-Age": "600"})

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """CORS headers on any answer (errors too) to an allowed origin."""
        origin = request.headers.get("Origin")
        if origin is not None and self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = "*" if self.any else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            response.headers["Vary"] = "Origin"
