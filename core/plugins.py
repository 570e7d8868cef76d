"""Plugin loading and the one async-aware facade over ``pm.hook``.

Loading order is explicit: built-in plugins (``DEFAULT_PLUGINS``), then third-party entry
points in group ``maas``; names in ``ROUTER_DISABLED_PLUGINS`` are blocked before loading.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterable
from typing import Any

import pluggy

from core import hookspecs

log = logging.getLogger("maas.plugins")

ENTRY_POINT_GROUP = "maas"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.auth",
    "plugins.rate_limit",
    "plugins.parse",
    "plugins.token_limit",
    "plugins.routing",
    "plugins.invoke",
    "plugins.flags",
    "adapters.local",
    "adapters.infinity",
    "adapters.rerank",
    "adapters.qwen3",
)


def build_plugin_manager(disabled: Iterable[str] = (), *, entry_points: bool = True,
                         builtins: Iterable[str] = DEFAULT_PLUGINS) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("maas")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    for module_name in builtins:
        if pm.is_blocked(module_name):
            continue
        pm.register(importlib.import_module(module_name), name=module_name)
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

    def register_adapters(self, register: Any) -> None:
        self.pm.hook.register_adapters(register=register)

    def register_stages(self, register: Any, settings: Any, metrics: Any = None) -> None:
        self.pm.hook.register_stages(register=register, settings=settings, metrics=metrics)

    def register_feature_flags(self, register: Any) -> None:
        self.pm.hook.register_feature_flags(register=register)

    async def startup(self, app: Any) -> None:
        for result in self.pm.hook.startup(app=app):
            await await_me_maybe(result)

    async def shutdown(self, app: Any) -> None:
        for result in self.pm.hook.shutdown(app=app):
            await await_me_maybe(result)

    async def config_changed(self, snapshot: Any, previous: Any) -> None:
        for result in self.pm.hook.config_changed(snapshot=snapshot, previous=previous):
            await await_me_maybe(result)

    def request_finished(self, flow: Any) -> None:
        hook = self.pm.hook.request_finished
        if not hook.get_hookimpls():  # called on every request: skip pluggy's call machinery when idle
            return
        try:
            hook(flow=flow)
        except Exception:  # an observer must never break the response
            log.exception("request_finished hook failed")

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin() if name)
