"""The served model is usable without HTTP: embed, rerank and tokenize through ``ServedModel``
(no request, no Flow) give exactly what the HTTP path gives, on the real packaged models."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from core.app import create_app
from core.config import Settings
from core.http import GATEWAY
from core.scheduling import BULK, Tenant
from core.served import ModelCall
from tests.support.configs import copy_default_configs

TEXTS = ["The cat sat on the mat.", "A quick brown fox", "Embeddings map text to vectors.", "ok"]


async def _client(aiohttp_client, tmp_path):
    config = copy_default_configs(tmp_path)
    app = create_app(Settings(routing_path=str(config / "routing.yaml"), auth_path=str(config / "auth.yaml"),
                              rate_limits_path=str(config / "rate_limits.yaml")))
    client = await aiohttp_client(app)
    gateway = app[GATEWAY]
    await gateway.load()
    return client, gateway


async def test_embed_and_rerank_through_the_served_model_equal_the_http_answers_bit_for_bit(aiohttp_client, tmp_path):
    client, gateway = await _client(aiohttp_client, tmp_path)
    minilm, reranker = gateway.snapshot.models["minilm"], gateway.snapshot.models["rerank-base"]

    direct = await minilm.embed(TEXTS, ModelCall(tenant=Tenant(name="indexer"), priority=BULK))
    resp = await client.post("/v1/embeddings", json={"model": "minilm", "input": TEXTS, "encoding_format": "base64"})
    assert resp.status == 200
    over_http = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                          for d in (await resp.json())["data"]])
    assert direct.vectors.dtype == np.float32 and direct.vectors.shape == (len(TEXTS), minilm.facts.dimensions)
    assert direct.vectors.tobytes() == over_http.astype(np.float32).tobytes()
    assert direct.cache_hits is None  # the default routing turns no cache on

    scores = (await reranker.rerank("what is an embedding?", TEXTS)).scores
    resp = await client.post("/v1/rerank", json={"model": "rerank-base", "query": "what is an embedding?",
                                                 "documents": TEXTS})
    by_index = {r["index"]: r["relevance_score"] for r in (await resp.json())["results"]}
    assert [by_index[i] for i in range(len(TEXTS))] == scores
    assert scores.index(max(scores)) == 2  # the one document about embeddings

    tokens = minilm.tokenize(["hello world"])
    resp = await client.post("/tokenize", json={"inputs": "hello world"})
    assert [[t["id"] for t in row] for row in tokens] == [[t["id"] for t in row] for row in await resp.json()]


async def test_a_served_model_is_built_once_per_snapshot_with_its_facts_resolved(aiohttp_client, tmp_path):
    _, gateway = await _client(aiohttp_client, tmp_path)
    snapshot = gateway.snapshot
    minilm = snapshot.models["minilm"]
    assert minilm.facts.dimensions == 384 and minilm.facts.max_input_tokens == 256
    assert minilm.facts.timeout_s == 30
    assert snapshot.models["rerank-base"].facts.max_top_k == 50
    assert gateway.snapshot.models["minilm"] is minilm  # the same object for every request of the snapshot
    await gateway.load()
    assert gateway.snapshot.models["minilm"] is not minilm
    # a new snapshot of an unchanged route keeps its scheduler (its queue survives the reload)
    assert gateway.snapshot.models["minilm"].feed.scheduler is minilm.feed.scheduler


def test_a_call_may_ask_for_another_priority_than_its_tenants():
    tenant = Tenant(name="indexer", weight=2.0)
    assert ModelCall(tenant=tenant).queued_as is tenant
    bulk = ModelCall(tenant=tenant, priority=BULK).queued_as
    assert (bulk.name, bulk.weight, bulk.priority) == ("indexer", 2.0, BULK)


async def test_a_call_past_its_deadline_is_an_upstream_timeout(aiohttp_client, tmp_path):
    import asyncio

    from core.errors import UpstreamTimeout

    _, gateway = await _client(aiohttp_client, tmp_path)
    minilm = gateway.snapshot.models["minilm"]
    # Past by the time it would run (a deadline in the future that the model, timed as it loaded,
    # could not meet is refused at once with 413 instead: tests/test_calibration.py).
    with pytest.raises(UpstreamTimeout):
        await minilm.embed(TEXTS * 200, ModelCall(deadline=asyncio.get_running_loop().time() - 0.001))
