"""Serving a process until SIGTERM, then draining it: the router and the rerank service alike.

For ``drain_s`` after SIGTERM (or SIGINT: Ctrl-C drains the same way; a second one exits at
once) the listener stays open and requests are served as
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
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from core import ids
from core.logs import access_log

log = logging.getLogger("maas.serving")


class Drain:
    """Whether the process is draining; the edge closes every connection after its answer then."""

    def __init__(self) -> None:
        self.active = False


DRAIN = web.AppKey("drain", Drain)


# What a parser-level refusal says: the kind of fault, never the bytes (a header may hold a key).
_FAULTS = {"LineTooLong": "a request line or header field is too long",
           "InvalidHeader": "a header field is malformed", "BadStatusLine": "the request line is malformed",
           "BadHttpMethod": "the request method is malformed", "TransferEncodingError": "the body framing is malformed",
           "ContentLengthError": "the body length is malformed", "InvalidURLError": "the URL is malformed"}


def _parser_error(self: RequestHandler, request: Any, status: int = 500, exc: BaseException | None = None,
                  message: str | None = None) -> web.StreamResponse:
    """aiohttp's answer to a request it could not parse, as the gateway answers everything: JSON
    in OpenAI's shape with an X-Request-ID, and one short WARNING line. aiohttp's own logs the
    whole traceback with the raw header (a key in ``Authorization: Bearer <key>\x01``) and echoes
    it in a text/plain body."""
    rid = ids.token()
    kind = type(exc).__name__ if exc is not None else "Error"
    fault = _FAULTS.get(kind, "the request is malformed")
    log.warning("malformed request refused", extra={"status": status, "fault": kind, "request_id": rid})
    if request.writer.output_size > 0:  # part of an answer went out: the connection is all that is left
        raise ConnectionError("the answer had started; closing the connection")
    client = status < 500
    body = {"error": {"message": f"Malformed HTTP request: {fault}" if client else "Internal server error",
                      "type": "invalid_request_error" if client else "server_error", "param": None,
                      "code": "malformed_request" if client else "internal_error"}}
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                            headers={"X-Request-ID": rid})
    response.force_close()
    return response


def harden_parser_errors() -> None:
    """Answer and log parser-level errors the gateway's way. aiohttp has no hook for this, so the
    method is replaced for the process; called by ``serve_until_stopped`` only."""
    RequestHandler.handle_error = _parser_error  # type: ignore[method-assign]


def _exit_now() -> None:
    log.warning("stopping at once: a second signal during the drain")
    access_log.flush()
    logging.shutdown()
    os._exit(130)


class Listener(Protocol):
    async def close(self, timeout_s: float) -> None: ...


#: opens the API port in front of the runner's aiohttp server (the router's lean lane, ``core.lane``)
Listen = Callable[[web.AppRunner, str, int], Awaitable[Listener]]


async def serve_until_stopped(app: web.Application, host: str, port: int, *, drain_s: float,
                              shutdown_timeout: float, on_drain: Callable[[], bool] = lambda: True,
                              header_timeout_s: float = 30.0,
                              beside: Sequence[tuple[web.Application, int]] = (), listen: Listen | None = None) -> None:
    """``on_drain`` marks the app not ready and says whether there is anything to drain (a
    process stopping because it never became ready has no traffic to wait for).

    ``header_timeout_s`` bounds how long a connection may sit without a whole request head: from
    its opening, or from its last answer. aiohttp's keep-alive timer does exactly that (it closes
    a connection still waiting for a request when it fires, never one whose request runs), so a
    client trickling header bytes is cut off then, like an idle one; the body has its own timeout.

    ``beside``: small apps served on ports of their own on the same host (``/metrics`` under
    ``ROUTER_METRICS_PORT``), up through the drain and closed after the API's. ``listen``: opens
    the API port instead of aiohttp's own site; its listener closes before the runner."""
    drain = app.setdefault(DRAIN, Drain())
    harden_parser_errors()
    # handler_cancellation: a client that hangs up (or half-closes, as Nginx reads a FIN) cancels its
    # handler, so its queued work is dropped rather than run for nobody.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, handle_signals=False,
                           handler_cancellation=True, keepalive_timeout=header_timeout_s)
    await runner.setup()
    others = [web.AppRunner(other, access_log=None, handle_signals=False, keepalive_timeout=header_timeout_s)
              for other, _ in beside]
    for other, (_, other_port) in zip(others, beside, strict=True):
        await other.setup()
        await web.TCPSite(other, host, other_port).start()
    listener = await listen(runner, host, port) if listen is not None else None
    if listener is None:
        await web.TCPSite(runner, host, port).start()
    log.info("serving", extra={"host": host, "port": port, "also": [p for _, p in beside],
                               "gil_switch_ms": round(sys.getswitchinterval() * 1000, 3)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        # A second Ctrl-C (or SIGTERM) while draining: the operator wants out now.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _exit_now)
        drain.active = True
        if on_drain():
            log.info("draining: still serving, readiness 503, connections closed after each answer",
                     extra={"drain_s": drain_s})
            await asyncio.sleep(drain_s)
    finally:
        server = runner.server
        if listener is not None and server is not None:  # the lane's requests and aiohttp's finish side by side
            server.pre_shutdown()
            for failed in await asyncio.gather(listener.close(shutdown_timeout), server.shutdown(shutdown_timeout),
                                               return_exceptions=True):
                if isinstance(failed, BaseException):
                    log.error("closing connections failed", exc_info=failed)
        await runner.cleanup()
        for other in others:
            await other.cleanup()
        log.info("stopped")
