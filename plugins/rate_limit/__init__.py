"""Rate limiting: token buckets per caller, quotas per key, their parts of rate_limits.yaml, and
their stores.

rate_limits.yaml gives each caller a bucket: its ``per_api_key`` entry, else ``default``;
anonymous callers ``anonymous`` (else ``default``), one bucket per client address (``limits``).
A request costs 1; ``tokens_per_minute`` adds a bucket charged with its tokens (``stages``). The
store (``store``, ``buckets``) is core's shared-state Redis when ``ROUTER_REDIS_URL`` is set
(replicas share budgets), else in-process. A key's ``quota`` (tokens and requests per UTC day
and month) is charged by ``token_budget`` and answered on ``GET /v1/usage`` (``quota``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core import hookimpl
from plugins.rate_limit.limits import SECTION, BucketSpec
from plugins.rate_limit.quota import QUOTA_METER, QuotaMeter
from plugins.rate_limit.quota import SECTION as QUOTA_SECTION
from plugins.rate_limit.quota import open_store as open_quota_store
from plugins.rate_limit.quota.flows import settle
from plugins.rate_limit.stages import RateLimiter, RateLimitStage, TokenBudgetStage
from plugins.rate_limit.store import open_store

if TYPE_CHECKING:
    from aiohttp import web

    from core.config import Settings
    from core.flow import Flow
    from core.metrics import GatewayMetrics
    from core.running import RunningGateway
    from core.snapshot import Snapshot

log = logging.getLogger("maas.ratelimit")


class RateLimitPlugin:
    """Owns the bucket store and the quota meter (in-process or Redis) that both stages share,
    the ``GET /v1/usage`` route, and closes them."""

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None
        self.meter: QuotaMeter | None = None

    @hookimpl
    def register_limits(self, register) -> None:
        register(SECTION)
        register(QUOTA_SECTION)

    @hookimpl
    def register_stages(self, register, settings: Settings, metrics: GatewayMetrics) -> None:
        self.limiter = RateLimiter(open_store(settings.redis_url), metrics)
        self.meter = QuotaMeter(open_quota_store(settings.redis_url), metrics)
        register(RateLimitStage(self.limiter, self.meter))
        register(TokenBudgetStage(self.limiter, self.meter))

    @hookimpl
    def startup(self, app: web.Application, gateway: RunningGateway) -> None:
        if self.meter is not None:
            from plugins.rate_limit.quota.usage_api import PATH, usage_handler

            app[QUOTA_METER] = self.meter
            gateway.meter = self.meter  # bulk jobs charge their lines through it
            app.router.add_get(PATH, usage_handler(self.meter))

    @hookimpl
    def request_finished(self, flow: Flow) -> None:
        if self.meter is not None:
            settle(self.meter, flow)

    @hookimpl
    def config_changed(self, snapshot: Snapshot) -> None:
        """Bucket levels need nothing here (they survive reloads); point at entries matching no key."""
        limits = snapshot.files.rate_limits
        for line in limits.unmatched(snapshot.files.auth):
            # The entry's name may be a key itself, so only where it is gets logged.
            log.warning("%s:%d: per_api_key entry matches no API key name or key; ignored", limits.file, line,
                        extra={"file": limits.file, "line": line})

    @hookimpl
    async def shutdown(self) -> None:
        if self.limiter is not None:
            await self.limiter.store.close()
        if self.meter is not None:
            await self.meter.close()


__all__ = ["BucketSpec", "RateLimitPlugin"]
