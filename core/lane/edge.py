"""What every lean-lane connection of one app shares (``core.lane``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from core.http import CODECS, CORS, GATEWAY
from core.serving import DRAIN, Drain


class Open(Protocol):
    """A lane connection, as the listener sees it."""

    task: asyncio.Task[None] | None

    @property
    def busy(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class Edge:
    """What every lane connection of one app shares."""

    def __init__(self, app: web.Application, server: web.Server, header_timeout_s: float) -> None:
        self.gateway = app[GATEWAY]
        self.server = server  # aiohttp's protocol factory, for the connections handed over
        self.codecs = {c.path: c for c in self.gateway.codecs.codecs}
        self.errors = app.get(CODECS)
        self.cors = app.get(CORS) is not None
        self.drain = app.get(DRAIN) or Drain()
        self.header_timeout_s = header_timeout_s
        self.lanes: set[Open] = set()
        self.closing = False  # the process stops: every answer closes its connection
