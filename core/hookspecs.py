"""The plugin contract: every hook the gateway calls, with when, what in and what out.

Hooks that may be implemented as coroutines are awaited by the facade in
``core.plugins.Hooks``; none of them uses ``firstresult``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from core.config import Settings
    from core.flow import Flow
    from core.gateway import Snapshot
    from core.metrics import GatewayMetrics

hookspec = pluggy.HookspecMarker("maas")


@hookspec
def register_adapters(register: Callable[..., None]) -> None:
    """Contribute upstream adapter types.

    Called once when the gateway (or ``maas check-config``) starts. Call
    ``register(type_name, factory)`` for each type; ``factory(upstream, context)`` returns an
    object implementing ``core.adapters.Adapter`` and is called once per distinct upstream
    config. The type name is what ``upstream.type`` in routing.yaml selects.

    .. versionadded:: 0.1
    """


@hookspec
def register_stages(register: Callable[..., None], settings: "Settings", metrics: "GatewayMetrics") -> None:
    """Contribute request-chain stages.

    Called once at startup. ``register(stage)`` fills the built-in slot named ``stage.name``
    (``auth``, ``rate_limit``, ``token_limit``, ``route``, ``adapter``);
    ``register(stage, before="route")`` or ``register(stage, after="auth")`` inserts an extra
    stage next to a named one. A stage is an object with ``name: str`` and
    ``async def __call__(flow) -> None``. ``metrics`` is the gateway's ``GatewayMetrics``
    (take it only if the stage counts something).

    .. versionadded:: 0.1
    """


@hookspec
def register_feature_flags(register: Callable[[str, str], None]) -> None:
    """Declare feature flags: ``register(name, description)``.

    Flags turned on by ``ROUTER_FEATURE_FLAGS`` or routing.yaml's ``feature_flags`` must be
    declared by some plugin; an undeclared one is reported at startup.

    .. versionadded:: 0.1
    """


@hookspec
def startup(app: "web.Application") -> Any:
    """The HTTP app is starting (may be a coroutine). Open long-lived resources here.

    .. versionadded:: 0.1
    """


@hookspec
def shutdown(app: "web.Application") -> Any:
    """The HTTP app is stopping (may be a coroutine). Close what ``startup`` opened.

    .. versionadded:: 0.1
    """


@hookspec
def config_changed(snapshot: "Snapshot", previous: "Snapshot | None") -> Any:
    """A new validated config snapshot has just been swapped in (may be a coroutine).

    ``previous`` is None on the first load. Plugins keeping state keyed by config (rate-limit
    buckets, caches) reconcile it here.

    .. versionadded:: 0.1
    """


@hookspec
def request_finished(flow: "Flow") -> None:
    """Observe a finished request (response or error set). Must not modify it or block.

    .. versionadded:: 0.1
    """
