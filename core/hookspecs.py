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
    from core.metrics import GatewayMetrics
    from core.options import Option
    from core.running import RunningGateway
    from core.snapshot import Snapshot

hookspec = pluggy.HookspecMarker("maas")


@hookspec
def register_adapters(register: Callable[..., None]) -> None:
    """Contribute upstream adapter types.

    Called once when the gateway (or ``maas check-config``) starts. Call
    ``register(type_name, cls)`` for each type; ``cls`` is a subclass of
    ``core.adapters.Adapter``, instantiated as ``cls(upstream, context)`` once per distinct
    upstream config (and ``instance_key``). The type name is what ``upstream.type`` in
    routing.yaml selects. A third-party plugin's type replaces a built-in type of that name;
    two third-party plugins registering one name is a startup error.

    .. versionadded:: 0.1
    """


@hookspec
def register_stages(register: Callable[..., None], settings: Settings, metrics: GatewayMetrics) -> None:
    """Contribute request-chain stages.

    Called once at startup. ``register(stage)`` fills the slot named ``stage.name`` (``auth``,
    ``rate_limit``, ``parse``, ``route``, ``token_limit``, ``token_budget``, ``adapter``);
    ``register(stage, before="route")`` or ``register(stage, after="auth")`` inserts an extra
    stage next to a named one; ``every_request=True`` runs it for every request, ``/v1/models``
    included, not only for model calls (the ``auth`` slot always does). A stage is an object with ``name: str`` and
    ``async def __call__(flow) -> None``, or a plain ``__call__`` that returns
    ``core.chain.SETTLED`` when it settled the flow and an awaitable when it must wait (the
    chain awaits what it returns, ``SETTLED`` excepted). ``metrics`` is the gateway's ``GatewayMetrics``
    (take it only if the stage counts something).

    Precedence (``core.chain``): a third-party plugin's stage replaces the built-in stage of
    its slot whatever the load order; two third-party plugins claiming one slot is a startup
    error naming both.

    .. versionadded:: 0.1
    """


@hookspec
def register_codecs(register: Callable[..., None]) -> None:
    """Contribute wire formats: ``register(codec)`` for each, an instance of a
    ``core.dialects.Codec`` subclass with its ``path``, ``kind``, field table, ``parse``,
    ``render`` and (for a shape of its own) ``render_error``.

    Called once at startup. The gateway serves ``POST codec.path`` with the request chain,
    lists it in ``/openapi.json`` and answers errors on the path in the codec's shape. A
    third-party codec at a built-in's path replaces it; two third-party codecs at one path are a
    startup error naming both.

    .. versionadded:: 0.3
    """


@hookspec
def register_settings(register: Callable[..., None]) -> None:
    """Declare the plugin's environment variables: ``register(SettingsSection(cls, options))``
    (``core.config.sections``), ``cls`` a frozen dataclass the variables fill.

    Called once when the gateway (or ``maas check-config``) starts, before any other
    contribution hook; the section is read from the process environment with the checks of
    core's own variables (a bad value is a startup error naming the variable) and reached as
    ``settings.of(cls)`` by everything that gets ``settings``.

    .. versionadded:: 0.3
    """


@hookspec
def register_limits(register: Callable[..., None]) -> None:
    """Declare the plugin's part of rate_limits.yaml: ``register(LimitsSection(...))``
    (``core.config.limits``): the ``per_api_key`` entry fields and top-level keys it owns and how
    it reads them into its typed values.

    Called once at startup. A field or top-level key no plugin (nor core's scheduler) declares
    is a config error with file and line. The plugin finds its values on the snapshot:
    ``snapshot.files.rate_limits.resolve(section.name, snapshot.files.auth)`` and ``.top(section.name)``.

    .. versionadded:: 0.3
    """


@hookspec
def register_embed_layers(register: Callable[..., None], settings: Settings, metrics: GatewayMetrics) -> None:
    """Contribute a layer in front of every embedding model's scheduler: ``register(layer)``,
    an ``core.served.layers.EmbedLayer`` (the embedding cache is one).

    Called once at startup. A layer is bound to each served model as snapshots are built and
    answers what it can before the model is asked. One layer serves: a third party's replaces
    the built-in one; two third-party layers are a startup error naming both.

    .. versionadded:: 0.3
    """


@hookspec
def register_feature_flags(register: Callable[[str, str], None]) -> None:
    """Declare feature flags: ``register(name, description)``.

    Flags turned on by ``ROUTER_FEATURE_FLAGS`` or routing.yaml's ``feature_flags`` must be
    declared by some plugin; an undeclared one is reported at startup.

    .. versionadded:: 0.1
    """


@hookspec
def register_route_options(register: Callable[[Option], None]) -> None:
    """Declare entries a route's ``options:`` block may hold for this plugin:
    ``register(Option(name, type, default, help, minimum=…))``.

    Together with the adapter type's ``route_options`` they make the route's option schema:
    an undeclared key is a config error with file and line, a declared one is validated and
    defaulted before the config is swapped in.

    .. versionadded:: 0.2
    """


@hookspec
def register_routes(register: Callable[..., None]) -> None:
    """Contribute HTTP routes besides the codecs' paths: ``register(method, path, handler,
    operation=None)``, ``handler`` an aiohttp handler (``async def handler(request)``),
    ``operation`` its OpenAPI operation object for ``/openapi.json``.

    Called once when the app is built. The handler runs behind the HTTP edge (request ids, errors
    in OpenAI's shape); it authenticates itself (``gateway.chain.run(flow, common_only=True)``)
    and reads the body itself: the router's body limit (``ROUTER_MAX_BODY_BYTES``) applies to
    ``request.read()`` only, so a route that streams its body (``request.multipart()``) sets its
    own. Two plugins registering one method and path is a startup error naming both.

    .. versionadded:: 0.4
    """


@hookspec
def startup(app: web.Application, gateway: RunningGateway) -> Any:
    """The HTTP app is starting (may be a coroutine). Open long-lived resources here.

    Implementations are called in registration order (built-ins first); a failure stops the
    start. Take ``gateway`` (the running ``core.gateway.Gateway``) rather than reading it off
    ``app``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``gateway`` argument; ``app`` stays for a deprecation period.
    """


@hookspec
def shutdown(app: web.Application, gateway: RunningGateway) -> Any:
    """The HTTP app is stopping (may be a coroutine). Close what ``startup`` or
    ``register_stages`` opened. Called last-registered first; one failing is logged and the
    others still run.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``gateway`` argument; ``app`` stays for a deprecation period.
    """


@hookspec
def config_changed(snapshot: Snapshot, previous: Snapshot | None) -> Any:
    """A new validated config snapshot has just been swapped in (may be a coroutine).

    ``previous`` is None on the first load. Plugins keeping state keyed by config (rate-limit
    buckets, caches) reconcile it here.

    .. versionadded:: 0.1
    """


@hookspec
def request_finished(flow: Flow) -> None:
    """Observe a finished request (response or error set). Must not modify it or block.

    .. versionadded:: 0.1
    """
