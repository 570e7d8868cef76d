"""The router app in the test's own event loop, on the fast ``echo`` adapter.

For tests of the request chain (auth, limits, flags) that do not need a model or a subprocess.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.app import create_app
from core.config import Settings
from core.gateway import Gateway
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.lane_server import LaneTestServer

ECHO_ROUTING: dict[str, Any] = {
    # echo-emb reads token ids as they are (the model's own), so tests can count them exactly
    "embeddings": [{"model": "echo-emb", "upstream": {"type": "echo", "dim": 4}, "token_ids": "model"},
                   {"model": "echo-other", "upstream": {"type": "echo", "dim": 4}}],
    "rerank": [{"model": "echo-rerank", "upstream": {"type": "echo"}}],
}
OPEN_AUTH: dict[str, Any] = {"api_keys": [], "allow_anonymous_without_api_keys": True}


def write_configs(folder: Path, *, routing: dict | None = None, auth: dict | None = None,
                  limits: dict | None = None, **settings: Any) -> Settings:
    """Write the three files (echo routes, open auth, no limits unless given); return Settings."""
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / "routing.yaml", routing if routing is not None else ECHO_ROUTING)
    write_yaml(folder / "auth.yaml", auth if auth is not None else OPEN_AUTH)
    write_yaml(folder / "rate_limits.yaml", limits if limits is not None else {})
    return replace(Settings(), routing_path=str(folder / "routing.yaml"), auth_path=str(folder / "auth.yaml"),
                   rate_limits_path=str(folder / "rate_limits.yaml"), **settings)


def echo_plugin_manager():
    pm = build_plugin_manager(entry_points=False)
    pm.register(echo, name="tests.support.echo")
    return pm


async def serve(aiohttp_client, settings: Settings, plugins: dict[str, object] | None = None):
    """A test client for the app (the echo adapters, and ``plugins`` by name); returns once the
    first config snapshot is serving."""
    pm = echo_plugin_manager()
    for name, plugin in (plugins or {}).items():
        pm.register(plugin, name=name)
    app = create_app(settings, pm)
    client = await aiohttp_client(LaneTestServer(app, header_timeout_s=settings.header_timeout_s))
    for _ in range(12000):  # in-process models load in the background: up to 120 s on a slow machine
        if app[GATEWAY].ready:
            return client
        await asyncio.sleep(0.01)
    raise TimeoutError("the gateway did not become ready")


def gateway_of(client) -> Gateway:
    return client.app[GATEWAY]
