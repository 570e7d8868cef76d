"""What a plugin may rely on of the running gateway (``startup`` and ``shutdown`` hand it over).

A Protocol, so the plugin contract (``core.hookspecs``) and the plugin loader (``core.plugins``)
name the gateway's public face without importing ``core.gateway``, which imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.adapters import AdapterRegistry
    from core.chain import Chain
    from core.config import Settings
    from core.dialects import CodecRegistry
    from core.metrics import GatewayMetrics
    from core.served import ModelServices
    from core.snapshot import Snapshot


class UsageMeter(Protocol):
    """Charges a key for work done outside an HTTP request (a bulk job's lines), as its requests
    are charged: a quota plugin sets ``RunningGateway.meter``; None when nothing meters."""

    async def charge(self, snapshot: Snapshot, name: str, tokens: int, requests: int = 1) -> Any:
        """Charge key ``name`` now: a ticket, or None when it has no quota (then ``record``).
        Raises a ``GatewayError`` (429 over quota, 503 store down) when it may not have the work."""
        ...

    def record(self, name: str, tokens: int, requests: int = 1) -> None:
        """Count usage of a key that has no quota."""
        ...


class RunningGateway(Protocol):
    settings: Settings
    metrics: GatewayMetrics
    snapshot: Snapshot | None  # the serving snapshot (None until the first load)
    services: ModelServices  # what outlives snapshots behind the served models (schedulers, the layer)
    draining: bool
    chain: Chain  # the request chain (a bulk job runs its parse, route and token_limit stages)
    codecs: CodecRegistry  # the wire formats by path
    registry: AdapterRegistry  # pin a snapshot's adapters while work outside a request uses them
    meter: UsageMeter | None  # quotas and usage for work outside a request (set by a quota plugin)

    @property
    def ready(self) -> bool: ...
