"""Serving a process until SIGTERM, then draining it: the router and the rerank service alike.

For ``drain_s`` after SIGTERM (or SIGINT) the listener stays open and requests are served as
usual: a draining replica that answered them 503 would fail them, since neither Kubernetes nor
Traefik retries a 503. Meanwhile ``/health/ready`` answers 503 (the app's ``on_drain`` says so)
and every answer carries ``Connection: close`` (``Drain.active``, read by the HTTP edge), so
balancers take the replica out and kept-alive clients reconnect elsewhere. Then the listener
and idle connections close, requests in flight get ``shutdown_timeout`` to finish, and the
function returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("maas.serving")


class Drain:
    """Whether the process is draining; the edge closes every connection after its answer then."""

    def __init__(self) -> None:
        self.active = False


DRAIN = web.AppKey("drain", Drain)


async def serve_until_stopped(app: web.Application, host: str, port: int, *, drain_s: float,
                              shutdown_timeout: float, on_drain: Callable[[], None] = lambda: None) -> None:
    drain = app.setdefault(DRAIN, Drain())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving", extra={"host": host, "port": port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        drain.active = True
        on_drain()
        log.info("draining: still serving, readiness 503, connections closed after each answer",
                 extra={"drain_s": drain_s})
        await asyncio.sleep(drain_s)
    finally:
        await runner.cleanup()
        log.info("stopped")
