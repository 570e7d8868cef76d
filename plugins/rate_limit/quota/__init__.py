"""Quotas: tokens and requests per key over the UTC day and calendar month.

A key's ``per_api_key`` entry in rate_limits.yaml may hold ``quota:`` (``limits``). The counts
live in core's shared-state Redis (``ROUTER_REDIS_URL``) so replicas share them exactly, else in
this process (``store``, ``redis_store``); periods are ``periods``. ``QuotaMeter`` charges, refunds
and records (``meter``); the rate-limit stages call it (``flows``); ``GET /v1/usage`` answers a key
its own figures (``usage_api``). Over a limit: 429 ``quota_exceeded`` (``core.errors.QuotaExceeded``).

Work outside an HTTP request (bulk jobs) charges through the same meter, found on the app as
``app[QUOTA_METER]`` (set at startup)::

    ticket = await meter.charge(snapshot, key_name, tokens)  # raises QuotaExceeded / ServiceUnavailable
    ...                                                      # the work
    if ticket is not None:                                   # a key with a quota, checked
        meter.settle(ticket, tokens_billed)                  # tokens_billed None: not done, given back
    elif done:                                               # no quota, or its store down and fail_open
        meter.record(key_name, tokens_billed)
"""

from aiohttp import web

from plugins.rate_limit.quota.limits import SECTION, QuotaSpec
from plugins.rate_limit.quota.meter import QuotaMeter, Ticket
from plugins.rate_limit.quota.store import MemoryQuotaStore, QuotaStore

QUOTA_METER = web.AppKey("quota_meter", QuotaMeter)


def open_store(redis_url: str | None) -> QuotaStore:
    """Core's shared-state Redis when ``ROUTER_REDIS_URL`` is set (replicas share the counts),
    else this process (exact for one replica only)."""
    if redis_url:
        from plugins.rate_limit.quota.redis_store import RedisQuotaStore

        return RedisQuotaStore(redis_url)
    return MemoryQuotaStore()


__all__ = ["QUOTA_METER", "SECTION", "QuotaMeter", "QuotaSpec", "Ticket", "open_store"]
