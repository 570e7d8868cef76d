"""The router's aiohttp application factory."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

import pluggy
from aiohttp import web

from core.config import Settings
from core.cors import Cors
from core.gateway import Gateway
from core.heap import HeapFreeze
from core.http import CODECS, CORS, GATEWAY, add_routes, edge_middleware
from core.logs import access_log
from core.memory import MemoryReturn
from core.reload import ConfigWatcher
from core.serving import DRAIN, Drain
from core.watchdog import LoopLagWatchdog

log = logging.getLogger("maas.app")
HEAP = web.AppKey("heap", HeapFreeze)  # set by ``maas serve`` only (``core.heap``)


def create_app(settings: Settings | None = None, pm: pluggy.PluginManager | None = None) -> web.Application:
    settings = settings or Settings.from_env()
    gateway = Gateway(settings, pm)
    app = web.Application(middlewares=[edge_middleware], client_max_size=settings.max_body_bytes)
    app[GATEWAY] = gateway
    app[DRAIN] = Drain()
    if settings.cors_origins:
        app[CORS] = Cors(settings.cors_origins)
    app[CODECS] = gateway.codecs
    add_routes(app, gateway.codecs, gateway.routes, with_metrics=settings.metrics_port is None)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_drain)
    log.info("request chain: %s", gateway.chain.describe(),
             extra={"plugins": gateway.hooks.plugin_names()})
    return app


async def _load_first(gateway: Gateway) -> None:
    try:
        await gateway.load()
    except Exception:
        log.critical("initial configuration failed to load; stopping")
        os.kill(os.getpid(), signal.SIGTERM)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    gateway.validate()  # fail fast on a bad config; loading models happens in the background
    await gateway.hooks.startup(app, gateway)
    loader = asyncio.create_task(_load_first(gateway), name="initial-config-load")
    watcher = ConfigWatcher(gateway)
    watcher.start(after=loader, handle_sighup=True)
    watchdog = LoopLagWatchdog(gateway.metrics)
    watchdog.start()
    memory = MemoryReturn()  # freed memory back to the system once quiet after large requests
    memory.start()
    heap = app.get(HEAP)
    if heap is not None:
        heap.start()
    yield
    if heap is not None:
        await heap.stop()
    await memory.stop()
    await watchdog.stop()
    await watcher.stop()
    loader.cancel()
    await gateway.hooks.shutdown(app, gateway)
    await gateway.close()
    access_log.flush()


async def _drain(app: web.Application) -> None:
    app[GATEWAY].draining = True
