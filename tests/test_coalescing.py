"""Request coalescing (flag ``coalesce_embeddings``): the scheduler merging small requests into shared calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from core import hookimpl
from core.adapters import Adapter, EmbedResult, RerankResult
from core.app import create_app
from core.config import Settings
from core.errors import UpstreamRejected
from core.http import GATEWAY
from core.options import Option, OptionSchema
from core.plugins import build_plugin_manager
from core.scheduling import Scheduler, Work
from tests.support.configs import write_yaml


class CountingAdapter(Adapter):
    upstream_options = OptionSchema([Option("delay_ms", float, 5, "how long a call takes", minimum=0)])

    """Stands in for an HTTP upstream: counts calls; refuses any batch holding the text "bad"."""

    calls: list[tuple[int, bool]] = []
    texts: list[list[str]] = []

    def __init__(self, upstream, context):
        super().__init__(upstream, context)
        self.delay_s = self.config["delay_ms"] / 1000

    async def embed(self, route, inputs, call):
        CountingAdapter.calls.append((len(inputs), call.request_id is None))
        CountingAdapter.texts.append(list(inputs))
        await asyncio.sleep(self.delay_s)
        if "bad" in inputs:
            raise UpstreamRejected("input 'bad' refused", status=400, param="input")
        vecs = np.zeros((len(inputs), 4), dtype=np.float32)
        for i, text in enumerate(inputs):
            vecs[i] = [len(text), 1.0, 0.0, 0.0]
        return EmbedResult(vecs)

    async def rerank(self, route, query, documents, flow):
        return RerankResult([0.0] * len(documents))

    async def close(self):
        pass


class CountingPlugin:
    @hookimpl
    def register_adapters(self, register):
        register("counting", CountingAdapter)


def _settings(tmp_path: Path, flags: list[str]) -> Settings:
    write_yaml(tmp_path / "routing.yaml", {
        "feature_flags": flags,
        "embeddings": [{"model": "up", "upstream": {"type": "counting", "delay_ms": 20}, "token_ids": "model",
                        "options": {"coalesce_wait_ms": 10, "coalesce_max_request": 4}}],
    })
    write_yaml(tmp_path / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(tmp_path / "rate_limits.yaml", {"default": {"capacity": 1000, "refill_rate": 1000}})
    return Settings(routing_path=str(tmp_path / "routing.yaml"), auth_path=str(tmp_path / "auth.yaml"),
                    rate_limits_path=str(tmp_path / "rate_limits.yaml"))


async def _client(aiohttp_client, tmp_path, flags):
    pm = build_plugin_manager(entry_points=False)
    pm.register(CountingPlugin(), name="counting")
    app = create_app(_settings(tmp_path, flags), pm)
    client = await aiohttp_client(app)
    for _ in range(200):
        if app[GATEWAY].ready:
            break
        await asyncio.sleep(0.02)
    CountingAdapter.calls = []
    CountingAdapter.texts = []
    return client


async def _embed_many(client, texts_per_request):
    async def one(texts):
        resp = await client.post("/v1/embeddings", json={"model": "up", "input": texts})
        return resp.status, await resp.json()

    return await asyncio.gather(*(one(t) for t in texts_per_request))


async def test_flag_coalesce_embeddings_merges_concurrent_small_requests_into_one_call(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, ["coalesce_embeddings"])
    requests = [["x" * (i + 1)] * (1 + i % 3) for i in range(12)]
    answers = await _embed_many(client, requests)
    for texts, (status, body) in zip(requests, answers, strict=True):
        assert status == 200, body
        # each caller gets its own rows, in its own order: the first component is the text length
        assert [round(d["embedding"][0]) for d in body["data"]] == [len(t) for t in texts]
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    calls = CountingAdapter.calls
    assert sum(n for n, _ in calls) == sum(len(t) for t in requests)
    assert len(calls) < len(requests) / 2, calls
    for texts, (_, anonymous) in zip(CountingAdapter.texts, calls, strict=True):
        # a call serving several requests carries no single request's id; one serving one, its own
        assert anonymous == (len(set(texts)) > 1), (texts, anonymous)


async def test_flag_coalesce_embeddings_off_keeps_one_call_per_request(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, [])
    answers = await _embed_many(client, [["a"], ["bb"], ["ccc"]])
    assert [s for s, _ in answers] == [200, 200, 200]
    assert sorted(n for n, _ in CountingAdapter.calls) == [1, 1, 1]
    assert not any(merged for _, merged in CountingAdapter.calls)


async def test_large_and_token_id_requests_bypass_coalescing(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, ["coalesce_embeddings"])
    answers = await _embed_many(client, [["a"] * 5, ["b"] * 6])
    assert [s for s, _ in answers] == [200, 200]
    assert sorted(CountingAdapter.calls) == [(5, False), (6, False)]
    CountingAdapter.calls = []
    resp = await client.post("/v1/embeddings", json={"model": "up", "input": [[101, 2054, 102]]})
    assert resp.status == 200, await resp.text()
    assert CountingAdapter.calls == [(1, False)]  # with its own flow: adapters decode ids with it


async def test_merged_call_does_not_carry_the_request_id_of_the_first_caller():
    from core.logs import request_id_var

    seen: list[str | None] = []

    async def record(batch, own):
        seen.append(request_id_var.get())
        return batch

    scheduler = Scheduler("record")
    token = request_id_var.set("first-caller")
    try:
        await scheduler.submit(Work([1], record))
        await scheduler.submit(Work([2], record))
    finally:
        request_id_var.reset(token)
        await scheduler.close()
    assert seen == [None, None]


async def test_one_bad_input_does_not_fail_its_neighbours(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, ["coalesce_embeddings"])
    answers = await _embed_many(client, [["good"], ["bad"], ["fine", "ok"]])
    statuses = [s for s, _ in answers]
    assert statuses == [200, 400, 200], answers
    assert any(merged and n > 1 for n, merged in CountingAdapter.calls)  # they did share a call first
    assert answers[1][1]["error"]["param"] == "input"
    assert [round(d["embedding"][0]) for d in answers[2][1]["data"]] == [4, 2]


async def test_flag_coalesce_embeddings_through_a_real_router_and_infinity(tmp_path, infinity_server):
    """The router process, its ``infinity`` adapter and a real Infinity server: concurrent
    one-text requests share upstream calls, and each caller gets the vector of its own text."""
    import re

    import httpx

    from tests.support.processes import start_router
    from tests.support.upstreams import router_configs

    def upstream_calls() -> float:
        text = httpx.get(url + "/metrics").text
        found = re.findall(r'^maas_upstream_requests_total\{adapter="infinity",outcome="ok",[^}]*\} (\S+)$', text,
                           re.M)
        assert found, "the router exports its upstream calls"
        return sum(float(v) for v in found)

    configs = router_configs(tmp_path / "configs", {
        "feature_flags": ["coalesce_embeddings"],
        "embeddings": [{"model": "m", "served_name": "minilm",
                        "upstream": {"type": "infinity", "url": infinity_server.url, "timeout_ms": 20000},
                        "options": {"coalesce_wait_ms": 20}}]})
    router, url = start_router(configs, tmp_path / "router.log")
    texts = [f"sentence number {i}" for i in range(16)]
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await client.post("/v1/embeddings", json={"model": "m", "input": "warm up"})
            calls_before = upstream_calls()
            answers = await asyncio.gather(*(client.post("/v1/embeddings", json={"model": "m", "input": t})
                                             for t in texts))
        calls = upstream_calls() - calls_before
    finally:
        router.stop()
    direct = httpx.post(infinity_server.url + "/v1/embeddings", json={"model": "minilm", "input": texts},
                        timeout=60).json()["data"]
    for resp, want in zip(answers, sorted(direct, key=lambda d: d["index"]), strict=True):
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["data"][0]["embedding"], want["embedding"], rtol=1e-4, atol=1e-5)
    assert calls < len(texts), f"{calls} upstream calls for {len(texts)} concurrent requests"


async def test_queues_of_a_replaced_upstream_are_dropped_after_a_reload(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, ["coalesce_embeddings"])
    gateway = client.app[GATEWAY]
    schedulers = gateway.services.schedulers
    assert all(status == 200 for status, _ in await _embed_many(client, [["a"], ["b"]]))
    [old] = schedulers.schedulers
    assert old.name == "up"
    write_yaml(tmp_path / "routing.yaml", {  # "up" changes (a new route), "other" is new
        "feature_flags": ["coalesce_embeddings"],
        "embeddings": [{"model": "up", "upstream": {"type": "counting", "delay_ms": 1}},
                       {"model": "other", "upstream": {"type": "counting", "delay_ms": 1}}]})
    await gateway.load()
    assert (await client.post("/v1/embeddings", json={"model": "other", "input": "x"})).status == 200
    # the old upstream's queue is gone with it; a model gets its queue with its first request
    assert old not in schedulers.schedulers
    assert [s.name for s in schedulers.schedulers] == ["other"]


def test_bad_coalescing_options_are_config_errors(tmp_path):
    from core.errors import ConfigError
    from core.gateway import Gateway

    settings = _settings(tmp_path, [])
    write_yaml(tmp_path / "routing.yaml", {"embeddings": [
        {"model": "up", "upstream": {"type": "counting"}, "options": {"coalesce_max_request": "abc"}}]})
    pm = build_plugin_manager(entry_points=False)
    pm.register(CountingPlugin(), name="counting")
    with pytest.raises(ConfigError, match="coalesce_max_request") as info:
        Gateway(settings, pm).validate()
    # the line of the offending option itself
    assert "coalesce_max_request" in (tmp_path / "routing.yaml").read_text().splitlines()[info.value.line - 1]
