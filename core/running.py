"""What a plugin may rely on of the running gateway (``startup`` and ``shutdown`` hand it over).

A Protocol, so the plugin contract (``core.hookspecs``) and the plugin loader (``core.plugins``)
name the gateway's public face without importing ``core.gateway``, which imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.config import Settings
    from core.metrics import GatewayMetrics
    from core.served import ModelServices
    from core.snapshot import Snapshot


class RunningGateway(Protocol):
    settings: Settings
    metrics: GatewayMetrics
    snapshot: Snapshot | None  # the serving snapshot (None until the first load)
    services: ModelServices  # what outlives snapshots behind the served models (schedulers, the layer)
    draining: bool

    @property
    def ready(self) -> bool: ...
