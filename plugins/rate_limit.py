"""Stage ``rate_limit``: token buckets per caller."""

from __future__ import annotations

from core import hookimpl
from core.flow import Flow


class RateLimitStage:
    name = "rate_limit"

    async def __call__(self, flow: Flow) -> None:
        return None


@hookimpl
def register_stages(register):
    register(RateLimitStage())
