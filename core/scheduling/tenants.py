"""Who the scheduler serves: each API key's ``Tenant``, resolved once per config snapshot.

A key's ``per_api_key`` entry in rate_limits.yaml may give it a weight, a priority, a bound on
its queued inputs and the right to choose its priority per request (``X-Priority``). The caller
(the chain's ``adapter`` stage, a bulk job) names the key and the priority it asks for; nothing
in scheduling reads HTTP headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.errors import InvalidRequest
from core.scheduling.work import ANONYMOUS, PRIORITIES, Tenant

if TYPE_CHECKING:
    from core.scheduling.policy import QueuePolicy

PRIORITY_HEADER = "X-Priority"


class Tenants:
    """The tenants of one snapshot's keys, made on first use and kept (they are immutable)."""

    def __init__(self, policies: Mapping[str, QueuePolicy]) -> None:
        self._policies = policies
        self._made: dict[str, Tenant] = {}

    def of(self, name: str | None, asked: str | None = None) -> Tenant:
        """The tenant of the key ``name`` (None: anonymous). ``asked`` is the priority the
        request asks for; only a key whose policy has ``priority_header`` may ask, and a value
        that is not a priority is a 400 for that key (other keys' choices are ignored)."""
        if name is None:
            return ANONYMOUS
        policy = self._policies.get(name)
        if policy is None:
            tenant = self._made.get(name)
            if tenant is None:
                tenant = self._made[name] = Tenant(name=name)
            return tenant
        priority = PRIORITIES[policy.priority]
        if asked is not None and policy.priority_header:
            chosen = PRIORITIES.get(asked.strip().lower())
            if chosen is None:
                raise InvalidRequest(f"{PRIORITY_HEADER} must be one of {', '.join(PRIORITIES)}",
                                     param=PRIORITY_HEADER, code="invalid_priority")
            priority = chosen
        key = f"{name}\0{priority}"
        tenant = self._made.get(key)
        if tenant is None:
            tenant = self._made[key] = Tenant(name=name, weight=policy.weight, priority=priority,
                                              max_queued=policy.max_queued, priority_header=policy.priority_header)
        return tenant
