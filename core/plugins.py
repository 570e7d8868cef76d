"""Plugin loading and the one async-aware facade over ``pm.hook``.

Loading order is explicit: built-in plugins (``DEFAULT_PLUGINS``), then third-party entry
points in group ``maas``; names in ``ROUTER_DISABLED_PLUGINS`` are blocked before loading.
A ``DEFAULT_PLUGINS`` entry is a module (``"plugins.auth"``) or a class in one
(``"plugins.rate_limit:RateLimitPlugin"``); a class is instantiated once per plugin manager, so
the state it holds (a store, a coalescer) belongs to one gateway. Either way the plugin's
name is the module path, the name ``ROUTER_DISABLED_PLUGINS`` takes.

Precedence does not depend on pluggy's call order (last registered first): each plugin's
``register_stages``, ``register_adapters`` and ``register_codecs`` get a ``register`` callback
of their own that knows whether the plugin is built in. A third party replaces a built-in stage
slot, adapter type or codec path; two third parties claiming the same one is a startup error
naming both (``core.chain``, ``core.adapters.AdapterRegistry``, ``core.dialects.registry``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from core import hookspecs

if TYPE_CHECKING:
    from core.chain import ChainBuilder
    from core.running import RunningGateway

log = logging.getLogger("maas.plugins")

ENTRY_POINT_GROUP = "maas"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.codecs",
    "plugins.cache:CachePlugin",
    "plugins.auth",
    "plugins.rate_limit:RateLimitPlugin",
    "plugins.parse",
    "plugins.routing",
    "plugins.token_limit",
    "plugins.invoke",
    "plugins.flags",
    "plugins.batches:BatchesPlugin",
    "adapters.local",
    "adapters.infinity",
    "adapters.rerank",
    "adapters.qwen3",
)

BUILTIN_NAMES: frozenset[str] = frozenset(spec.partition(":")[0] for spec in DEFAULT_PLUGINS)


def load_builtin(spec: str) -> Any:
    """The plugin object for one ``DEFAULT_PLUGINS`` entry: the module, or a new instance."""
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)() if class_name else module


def build_plugin_manager(disabled: Iterable[str] = (), *, entry_points: bool = True,
                         builtins: Iterable[str] = DEFAULT_PLUGINS) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("maas")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    for spec in builtins:
        name = spec.partition(":")[0]
        if pm.is_blocked(name):
            continue
        pm.register(load_builtin(spec), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


async def await_me_maybe(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


class Hooks:
    """Typed calls into every plugin; coroutine results are awaited, in order."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._finished_from: list[Any] = []  # the hook's implementations ``_finished`` was read from
        self._finished: list[tuple[Callable[..., Any], bool]] | None = []

    def _each(self, hook: Any, make_register: Callable[[str, bool], Any], **kwargs: Any) -> None:
        """Call every implementation of a contribution hook, in registration order, each with a
        ``register`` callback bound to its plugin's name and standing."""
        for impl in hook.get_hookimpls():  # registration order (pluggy would call them in reverse)
            origin = impl.plugin_name
            given = {"register": make_register(origin, origin in BUILTIN_NAMES), **kwargs}
            impl.function(*[given[name] for name in impl.argnames])

    def register_adapters(self, registrar: Callable[[str, bool], Any]) -> None:
        self._each(self.pm.hook.register_adapters, registrar)

    def register_stages(self, builder: ChainBuilder, settings: Any, metrics: Any = None) -> None:
        self._each(self.pm.hook.register_stages, lambda origin, builtin: builder.registrar(origin, builtin=builtin),
                   settings=settings, metrics=metrics)

    def register_codecs(self, registrar: Callable[[str, bool], Any]) -> None:
        self._each(self.pm.hook.register_codecs, registrar)

    def register_routes(self, registrar: Callable[[str, bool], Any]) -> None:
        self._each(self.pm.hook.register_routes, registrar)

    def register_limits(self, register: Any) -> None:
        self.pm.hook.register_limits(register=register)

    def register_settings(self, registrar: Callable[[str, bool], Any]) -> None:
        self._each(self.pm.hook.register_settings, registrar)

    def register_embed_layers(self, registrar: Callable[[str, bool], Any], settings: Any, metrics: Any) -> None:
        self._each(self.pm.hook.register_embed_layers, registrar, settings=settings, metrics=metrics)

    def register_feature_flags(self, register: Any) -> None:
        self.pm.hook.register_feature_flags(register=register)

    def register_route_options(self, register: Any) -> None:
        self.pm.hook.register_route_options(register=register)

    async def startup(self, app: Any, gateway: RunningGateway) -> None:
        """Every plugin's ``startup``, in registration order; the first failure stops the start."""
        for impl in self.pm.hook.startup.get_hookimpls():
            given = {"app": app, "gateway": gateway}
            await await_me_maybe(impl.function(*[given[name] for name in impl.argnames]))

    async def shutdown(self, app: Any, gateway: RunningGateway) -> None:
        """Every plugin's ``shutdown``, last started first; one failing does not stop the others
        from closing what they opened."""
        for impl in reversed(self.pm.hook.shutdown.get_hookimpls()):
            given = {"app": app, "gateway": gateway}
            try:
                await await_me_maybe(impl.function(*[given[name] for name in impl.argnames]))
            except Exception:
                log.exception("shutdown of plugin %s failed", impl.plugin_name)

    async def config_changed(self, snapshot: Any, previous: Any) -> None:
        for result in self.pm.hook.config_changed(snapshot=snapshot, previous=previous):
            await await_me_maybe(result)

    def request_finished(self, flow: Any) -> None:
        """Every ``request_finished`` observer, called directly (pluggy's call machinery cost more
        than the observers on every request), in pluggy's order, the last registered first."""
        hook = self.pm.hook.request_finished
        impls = hook.get_hookimpls()
        if impls != self._finished_from:  # a plugin came or went: read the observers again
            self._finished_from = impls
            plain = not any(i.hookwrapper or i.wrapper for i in impls)
            self._finished = [(i.function, bool(i.argnames)) for i in reversed(impls)] if plain else None
        if not impls:
            return
        try:
            if self._finished is None:  # a wrapper among them: pluggy runs it
                hook(flow=flow)
                return
            for function, takes_flow in self._finished:
                function(flow) if takes_flow else function()
        except Exception:  # an observer must never break the response
            log.exception("request_finished hook failed")

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin() if name)
