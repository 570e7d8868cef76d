"""Readiness: 503 while models load and while draining; liveness all along; requests refused cleanly."""

from __future__ import annotations

import asyncio

import numpy as np

from core import hookimpl
from core.adapters import Adapter, EmbedResult
from core.app import create_app
from core.http import GATEWAY
from core.serving import DRAIN
from tests.support.inprocess import echo_plugin_manager, write_configs


class GatedAdapter(Adapter):
    """Its model 'loads' until the test opens the gate."""

    gate: asyncio.Event

    async def prepare(self, route):
        await self.gate.wait()

    async def embed(self, route, inputs, flow):
        return EmbedResult(np.ones((len(inputs), 2), dtype=np.float32))



class GatedPlugin:
    @hookimpl
    def register_adapters(self, register):
        register("gated", GatedAdapter)


async def test_ready_only_after_loading_and_not_while_draining(aiohttp_client, tmp_path, monkeypatch):
    import core.http

    monkeypatch.setattr(core.http, "STARTING_WAIT_S", 0.2)  # a model that loads for longer than the wait
    GatedAdapter.gate = asyncio.Event()
    settings = write_configs(tmp_path, routing={"embeddings": [{"model": "slow", "upstream": {"type": "gated"}}]})
    pm = echo_plugin_manager()
    pm.register(GatedPlugin())
    app = create_app(settings, pm)
    client = await aiohttp_client(app)

    assert (await client.get("/health/live")).status == 200
    starting = await client.get("/health/ready")
    assert starting.status == 503 and (await starting.json()) == {"status": "starting"}
    early = await client.post("/v1/embeddings", json={"model": "slow", "input": "x"})
    assert early.status == 503 and "Retry-After" in early.headers
    assert set((await early.json())["error"]) == {"message", "type", "param", "code"}

    # A request that comes a moment before the load ends waits for it and is served, not refused.
    monkeypatch.setattr(core.http, "STARTING_WAIT_S", 30.0)
    waiting = asyncio.create_task(client.post("/v1/embeddings", json={"model": "slow", "input": "x"}))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    GatedAdapter.gate.set()
    assert (await waiting).status == 200
    for _ in range(200):
        if (await client.get("/health/ready")).status == 200:
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/health/ready")).status == 200
    assert (await client.post("/v1/embeddings", json={"model": "slow", "input": "x"})).status == 200

    app[GATEWAY].draining = True  # what SIGTERM starts (core.serving.serve_until_stopped)
    app[DRAIN].active = True
    draining = await client.get("/health/ready")
    assert draining.status == 503 and (await draining.json()) == {"status": "draining"}
    # API requests are still served, so nobody's request fails; the connection closes after each
    served = await client.post("/v1/embeddings", json={"model": "slow", "input": "x"})
    assert served.status == 200 and served.headers["Connection"] == "close"
    assert (await client.get("/health/live")).status == 200
