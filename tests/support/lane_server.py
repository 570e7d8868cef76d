"""aiohttp's test server with the API port opened by the lean lane (``core.lane``), as
``maas serve`` opens it: every in-process test's request goes through the lane first."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from core.lane import Listener, listen


class LaneTestServer(TestServer):
    """``aiohttp_client(LaneTestServer(app))``: the client talks to the lane on 127.0.0.1."""

    def __init__(self, app: web.Application, *, header_timeout_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(app, host="127.0.0.1", **kwargs)
        self.header_timeout_s = header_timeout_s
        self.listener: Listener | None = None

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        kwargs.setdefault("keepalive_timeout", self.header_timeout_s)
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        self.listener = await listen(self.runner, "127.0.0.1", 0, header_timeout_s=self.header_timeout_s)
        sockets = self.listener.server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else 0
        self.scheme = "http"
        self._root = URL(f"http://127.0.0.1:{self.port}")

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close(1.0)
            self.listener = None
        await super().close()

