"""The lean lane: the common request on a codec's path served without aiohttp's web layer.

aiohttp's server makes a request object, a stream for its body, a response object and a header
multidict for every request, and runs the app's router and middleware: about 30 µs of the
router's CPU a request, a tenth of it. Every connection on the API port starts in the lane
(``Lane``). The lane serves exactly the common request:

* ``POST <a codec's path> HTTP/1.1``, no query string;
* a head of at most 8 KiB, each header line a token, a colon and printable ASCII, lines ended
  by CRLF;
* at most one ``Content-Length``, within ``ROUTER_MAX_BODY_BYTES``; no ``Transfer-Encoding``,
  ``Expect`` or ``Upgrade``; no ``Origin`` while CORS is on;
* a body that came with its head, or of at most 64 KiB (it is waited for within
  ``ROUTER_BODY_TIMEOUT_SECONDS``: a 408 after, and a client that leaves meanwhile is logged as
  a 499, as aiohttp's path does).

It runs such a request through the same code as aiohttp's handler (``core.http.run_codec``) and
writes the answer aiohttp would (``core.answer.head``). At any other request (another path or
method, HTTP/1.0, a chunked body or a bigger one still arriving, a malformed head) the connection is
handed to aiohttp with the bytes read so far: aiohttp serves that request and the rest of the
connection as it serves a connection without the lane, with its errors, limits and body timeout,
and auth before a slow body is read.

The lane keeps the edge's rules: a request id in and out, one access-log line, the codec's
error shapes; a client that leaves cancels its request; a connection waits at most
``ROUTER_HEADER_TIMEOUT_SECONDS`` for a request head; ``Connection: close`` while the process
drains; a client that does not read its answers, or pipelines past 64 KiB, stops being read.
``listen`` opens the port with the lane; its ``Listener`` closes it.
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
        """Stop listening; close idle connections now, and busy ones once their request is answered
        (or after ``timeout_s``). Connections handed to aiohttp close with its runner."""
        self.server.close()
        self.edge.closing = True
        for lane in list(self.edge.lanes):
            if lane.task is None:
                lane.close()
        busy = [lane.task for lane in self.edge.lanes if lane.task is not None]
        if busy:
            await asyncio.wait(busy, timeout=timeout_s)
        for lane in list(self.edge.lanes):
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
