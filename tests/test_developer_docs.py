"""The worked plugin example of DEVELOPER.md, run as written: a third-party adapter type, a
stage inserted after auth and a feature flag, served by the real app."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys

import numpy as np
import pytest
import yaml

from core.app import create_app
from core.config import Settings
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from tests.support.configs import write_yaml
from tests.support.processes import ROOT

DEVELOPER = ROOT / "DEVELOPER.md"


def _example_source() -> str:
    match = re.search(r"<!-- example: maas_example\.py -->\n```python\n(.*?)```", DEVELOPER.read_text(), re.S)
    assert match, "DEVELOPER.md lost its worked example"
    return match.group(1)


def _example_routing() -> dict:
    match = re.search(r"```yaml\n(feature_flags:.*?)```", DEVELOPER.read_text(), re.S)
    assert match
    return yaml.safe_load(match.group(1))


@pytest.fixture
def example_plugin(tmp_path):
    path = tmp_path / "maas_example.py"
    path.write_text(_example_source())
    spec = importlib.util.spec_from_file_location("maas_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("maas_example", None)


@pytest.fixture
async def client(aiohttp_client, tmp_path, example_plugin):
    routing = _example_routing()
    routing["rerank"] = [{"model": "hash-rerank", "upstream": {"type": "hash"}}]
    write_yaml(tmp_path / "routing.yaml", routing)
    write_yaml(tmp_path / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(tmp_path / "rate_limits.yaml", {"default": {"capacity": 100, "refill_rate": 100}})
    settings = Settings(routing_path=str(tmp_path / "routing.yaml"), auth_path=str(tmp_path / "auth.yaml"),
                        rate_limits_path=str(tmp_path / "rate_limits.yaml"))
    pm = build_plugin_manager(entry_points=False)
    pm.register(example_plugin, name="maas_example")
    try:
        app = create_app(settings, pm)
        client = await aiohttp_client(app)
        for _ in range(200):
            if app[GATEWAY].ready:
                break
            await asyncio.sleep(0.02)
        yield client
    finally:
        pm.unregister(example_plugin)


async def test_the_example_stage_sits_after_auth(client):
    names = client.app[GATEWAY].chain.names
    assert names[:2] == ("auth", "tenant") and names[-1] == "adapter"


async def test_the_flag_makes_the_tenant_header_required(client):
    resp = await client.post("/v1/embeddings", json={"model": "hash-64", "input": "x"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "missing_tenant"


async def test_the_example_adapter_serves_embeddings_and_rerank(client):
    headers = {"X-Tenant": "team-a"}
    body = {"model": "hash-64", "input": ["same", "other", "same"], "encoding_format": "float"}
    resp = await client.post("/v1/embeddings", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    vectors = np.array([d["embedding"] for d in (await resp.json())["data"]])
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
    resp = await client.post("/v1/rerank", json={"model": "hash-rerank", "query": "q",
                                                 "documents": ["q", "zzz", "yyy"]}, headers=headers)
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert results[0]["index"] == 0  # the query itself scores 1.0, the most
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
