"""A text's vector and a pair's score do not depend on what shares their batch: alone, beside any
batch-mates, through the micro-batcher or not. Against the packaged MiniLM and the packaged INT8
ONNX ms-marco reranker, whose dynamic quantisation would otherwise move a score by up to 48 %."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.local.models import SentenceEmbedder, load_reranker
from tests.support.inprocess import serve, write_configs

POOL = ["Kittens are young cats.", "A cat is a small domesticated carnivorous mammal. " * 6, "Dogs bark.",
        "Berlin has a population of about 3.7 million registered inhabitants.", "Paris is in France.",
        "The quick brown fox jumps over the lazy dog, again and again, " * 10, "ok", "Zürich, 東京, São Paulo."]
QUERY = "what is a cat?"
RUNS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
batches = st.tuples(st.sampled_from(POOL), st.lists(st.sampled_from(POOL), max_size=7), st.integers(0, 7))


@pytest.fixture(scope="module")
def reranker():
    return load_reranker("cross-encoder/ms-marco-MiniLM-L-12-v2", device="cpu")


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")


@RUNS
@given(batches)
def test_a_pairs_score_is_the_same_beside_any_batch_mates(reranker, case):
    target, mates, at = case
    alone = float(reranker.score([(QUERY, target)])[0])
    pairs = [(QUERY, d) for d in mates]
    at = min(at, len(pairs))
    pairs.insert(at, (QUERY, target))
    assert float(reranker.score(pairs)[at]) == pytest.approx(alone, rel=1e-5, abs=1e-7)


@RUNS
@given(batches)
def test_a_texts_vector_is_the_same_beside_any_batch_mates(embedder, case):
    target, mates, at = case
    alone = embedder.encode([target])[0]
    texts = list(mates)
    at = min(at, len(texts))
    texts.insert(at, target)
    got = embedder.encode(texts)[at]
    assert got.tobytes() == alone.tobytes()  # bit for bit: each text is padded by its own length only


async def test_concurrent_requests_batched_together_score_as_alone(aiohttp_client, tmp_path):
    routing = {"rerank": [{"model": "rr", "served_name": "cross-encoder/ms-marco-MiniLM-L-12-v2",
                           "upstream": {"type": "local", "max_wait_ms": 20}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))

    async def scores(docs):
        resp = await client.post("/v1/rerank", json={"model": "rr", "query": QUERY, "documents": docs})
        return {r["index"]: r["relevance_score"] for r in (await resp.json())["results"]}

    alone = [await scores([d]) for d in POOL]
    together = await asyncio.gather(*(scores([d]) for d in POOL))  # one micro-batch, other callers' pairs
    for a, b in zip(alone, together, strict=True):
        assert b[0] == pytest.approx(a[0], rel=1e-5)
