"""The quick start in ``core``'s package docstring runs as written: its plugin registers, a route
names its type, and an embeddings request is answered by it."""

from __future__ import annotations

import asyncio
import re
import textwrap
import types

import core
from core.app import create_app
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from tests.support.inprocess import write_configs


def _quickstart_module() -> types.ModuleType:
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", core.__doc__ or "")
    source = textwrap.dedent(blocks[0])
    assert "register_adapters" in source
    module = types.ModuleType("quickstart_plugin")
    exec(compile(source, "core/__init__.py (quick start)", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


async def test_the_package_quick_start_serves_a_request(aiohttp_client, tmp_path):
    pm = build_plugin_manager(entry_points=False)
    pm.register(_quickstart_module(), name="quickstart_plugin")
    settings = write_configs(tmp_path, routing={"embeddings": [{"model": "const", "upstream": {"type": "constant"}}]})
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    resp = await client.post("/v1/embeddings", json={"model": "const", "input": ["a", "b"]})
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert [len(d["embedding"]) for d in data] == [8, 8]
    assert abs(sum(x * x for x in data[0]["embedding"]) - 1.0) < 1e-5
