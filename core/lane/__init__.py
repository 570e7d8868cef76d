"""The lean lane: the common request on a codec's path served without aiohttp's web layer.

aiohttp's server makes a request object, a stream for its body, a response object and a header
multidict for every request, and runs the app's router and middleware: about 30 µs of the
router's CPU a request, a tenth of it. Every connection on the API port starts in the lane
(``Lane``). The lane serves exactly the common request:

* ``POST <a codec's path> HTTP/1.1``, no query string;
* a head of at most 8 KiB and 128 lines, each header line a token, a colon and printable ASCII,
  lines ended by CRLF; one ``Host``, no header twice;
* a ``Content-Length`` within ``ROUTER_MAX_BODY_BYTES`` or none; no ``Transfer-Encoding``,
  ``Content-Encoding``, ``Expect``, ``Upgrade`` or ``Proxy-Connection``; no ``Origin`` while CORS
  is on;
* a body that came with its head, or of at most 64 KiB (it is waited for within
  ``ROUTER_BODY_TIMEOUT_SECONDS``: a 408 after, and a client that leaves meanwhile is logged as
  a 499, as aiohttp's path does).

It runs such a request through the same code as aiohttp's handler (``core.http.run_codec``) and
writes the answer aiohttp would (``core.answer.head``). At any other request (another path or
method, HTTP/1.0, no ``Host`` or a header twice, a chunked, compressed or bigger late body, a
malformed head) the connection is handed to aiohttp with the bytes read so far: aiohttp serves
that request and the rest of the connection as it serves a connection without the lane, with
its errors, limits and body timeout, and auth before a slow body is read. (A small late body
the lane waits for is read before auth: at most 64 KiB for at most the body timeout.)

The lane keeps the edge's rules: a request id in and out, one access-log line, the codec's
error shapes; a client that leaves cancels its request; a connection waits at most
``ROUTER_HEADER_TIMEOUT_SECONDS`` for a request head, across a hand-over too; ``Connection:
close`` while the process drains; a client that pipelines past 64 KiB, or does not read its
answers, stops being read. ``listen`` opens the port with the lane; its ``Listener`` closes it.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from core.config import Settings
from core.lane.connection import Lane
from core.lane.edge import Edge
from core.serving import Listen

__all__ = ["Edge", "Lane", "Listener", "api_listen", "listen"]


class Listener:
    """The API port, listening with the lane."""

    def __init__(self, server: asyncio.AbstractServer, edge: Edge) -> None:
        self.server, self.edge = server, edge

    async def close(self, timeout_s: float) -> None:
        """Stop listening; close idle connections now, and busy ones (a request running, or its
        body arriving) once it is answered, or after ``timeout_s``. Connections handed to aiohttp
        close with its server (``serve_until_stopped`` waits for both at once)."""
        self.server.close()
        self.edge.closing = True  # every answer from now on closes its connection
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout_s
        while loop.time() < due:
            for lane in list(self.edge.lanes):
                if not lane.busy:
                    lane.close()  # an answer still being sent goes out; nothing waits for it
            busy = [lane for lane in self.edge.lanes if lane.busy]
            if not busy:
                break
            running = [lane.task for lane in busy if lane.task is not None]
            wait = min(due - loop.time(), 0.05)
            if running:
                await asyncio.wait(running, timeout=wait)
            else:  # only bodies still arriving: each ends in a request or a 408
                await asyncio.sleep(wait)
        for lane in list(self.edge.lanes):
            if lane.busy:  # past the deadline: its request is dropped (the task is cancelled)
                lane.abort()
            else:
                lane.close()


def api_listen(settings: Settings) -> Listen | None:
    """How ``maas serve`` opens the API port: with the lane, unless ``ROUTER_LEAN_LANE`` is off
    (then aiohttp's own site reads every request)."""
    return partial(listen, header_timeout_s=settings.header_timeout_s) if settings.lean_lane else None


async def listen(runner: web.AppRunner, host: str, port: int, *, header_timeout_s: float) -> Listener:
    """Listen on ``host:port`` with the lane in front of ``runner``'s aiohttp server (set up)."""
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    edge = Edge(runner.app, server, header_timeout_s)
    listening = await asyncio.get_running_loop().create_server(lambda: Lane(edge), host, port, backlog=128,
                                                               reuse_address=True)
    return Listener(listening, edge)
