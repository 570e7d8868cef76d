"""What a caller says about one call to a served model (``ModelCall``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.scheduling.work import ANONYMOUS, Tenant


@dataclass(slots=True)
class ModelCall:
    """A value, never changed once made (``dataclasses.replace`` makes another; not frozen, as a
    frozen dataclass costs three times as long to make, and one is made for every call). What a
    caller says about one call: whose it is (the tenant, with its weight and bounds;
    also the scope of its cache entries), at which priority (None: the tenant's own;
    ``core.scheduling.BULK`` for a bulk job), until when it is wanted (event-loop clock; None: the
    model's timeout from now), its request id for the upstream's logs, the inputs' token counts
    when already counted (else estimated), and the request-level fields that change what the
    model returns for the same input (``core.space.cache_fields``: they enter the cache key)."""

    tenant: Tenant = ANONYMOUS
    deadline: float | None = None
    request_id: str | None = None
    token_counts: Sequence[int] | None = None
    priority: int | None = None
    shaping: Mapping[str, Any] = field(default_factory=dict)

    @property
    def queued_as(self) -> Tenant:
        """The tenant the scheduler queues this call under (its flow is per tenant and priority)."""
        tenant, priority = self.tenant, self.priority
        return tenant if priority is None or priority == tenant.priority else replace(tenant, priority=priority)
