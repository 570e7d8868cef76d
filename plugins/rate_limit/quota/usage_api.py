"""``GET /v1/usage``: a key's own usage and what is left of its quota, for the current UTC day and
month. A key is required (an anonymous caller has no figures of its own), and a key only ever
sees its own: the caller is whoever the chain's ``auth`` stage says it is, the figures are those
of that name. Admins' totals across keys stay in Prometheus (``maas_usage_*``). Its schema is in
``core.openapi``.

    {"object": "usage", "key": "team-search", "periods": [
      {"period": "day", "start": "2026-12-04T00:00:00Z", "resets_at": "2026-12-05T00:00:00Z",
       "tokens": {"used": 1200, "limit": 2000000, "remaining": 1998800},
       "requests": {"used": 3, "limit": null, "remaining": null}},
      {"period": "month", ...}]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import AuthError, ServiceUnavailable
from core.flow import Flow
from core.http import GATEWAY, REQUEST_ID, json_response
from plugins.rate_limit.quota.periods import iso

if TYPE_CHECKING:
    from aiohttp import web

    from plugins.rate_limit.quota.meter import PeriodUsage, QuotaMeter

PATH = "/v1/usage"

def _figures(used: int, limit: int | None) -> dict[str, int | None]:
    return {"used": used, "limit": limit, "remaining": None if limit is None else max(0, limit - used)}


def usage_body(name: str, found: list[PeriodUsage]) -> dict[str, Any]:
    periods = []
    for item in found:
        spec, period = item.spec, item.period
        periods.append({
            "period": period.name, "start": iso(period.start), "resets_at": iso(period.end),
            "tokens": _figures(item.used.tokens, spec.limit("tokens", period.name) if spec else None),
            "requests": _figures(item.used.requests, spec.limit("requests", period.name) if spec else None)})
    return {"object": "usage", "key": name, "periods": periods}


def usage_handler(meter: QuotaMeter):
    async def handler(request: web.Request) -> web.Response:
        gw = request.app[GATEWAY]
        snapshot = gw.snapshot
        if snapshot is None:
            raise ServiceUnavailable("The gateway is starting; retry shortly")
        flow = Flow(kind="models", snapshot=snapshot, request_id=request[REQUEST_ID],
                    client_ip=request.remote or "unknown", headers=request.headers)
        await gw.chain.run(flow, common_only=True)  # auth, whoever fills its slot: 401 without a valid key
        caller = flow.caller
        if caller is None or caller.anonymous:
            raise AuthError(f"GET {PATH} answers a key its own usage: send 'Authorization: Bearer <key>'",
                            code="missing_api_key")
        body = usage_body(caller.name, await meter.usage(snapshot, caller.name))
        return json_response(body, headers={"Cache-Control": "no-store"})

    return handler
