"""Metering bills what was done: per key name, ``maas_usage_*`` adds up to exactly what the answers
told the callers (tokens, inputs, requests), over embeddings and rerank in every dialect, on a model
the router counts itself and on upstreams that report their own usage."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.inprocess import gateway_of, serve, write_configs
from tests.support.openai_stub import make_app

KEYS = {"alpha-key-0123456789": "alpha", "beta-key-0123456789": "beta"}
LONG = " ".join(f"word{i}" for i in range(100))  # windowed on echo-rerank-short (64 tokens), whole elsewhere


def _routing(stub: str) -> dict[str, Any]:
    return {"defaults": {"embeddings": "echo-emb", "rerank": "echo-rerank"},
            "embeddings": [{"model": "echo-emb", "max_input_tokens": 512, "upstream": {"type": "echo", "dim": 4}},
                           {"model": "stub-emb", "served_name": "any", "upstream": {"type": "infinity", "url": stub}}],
            "rerank": [{"model": "echo-rerank", "max_input_tokens": 512, "upstream": {"type": "echo"}},
                       {"model": "echo-rerank-short", "max_input_tokens": 64, "upstream": {"type": "echo"}},
                       {"model": "stub-rerank", "served_name": "any", "upstream": {"type": "rerank", "url": stub}}]}


def _reported(path: str, body: Any, headers) -> int:
    """The tokens an answer reports, read where its dialect puts them."""
    if path in ("/v1/embeddings", "/embeddings"):
        return body["usage"]["prompt_tokens"]
    if path in ("/v1/embed", "/v2/embed"):
        return body["meta"]["billed_units"]["input_tokens"]
    if isinstance(body, list):  # TEI
        return int(headers["x-compute-tokens"])
    if "usage" in body:  # the guide's, Jina's and Voyage's rerank answer
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] == body["meta"]["tokens"]["input_tokens"]
        return body["usage"]["total_tokens"]
    return body["meta"]["tokens"]["input_tokens"]  # Cohere v2 rerank


CALLS: list[tuple[str, dict[str, Any], int]] = [  # path, body, inputs sent
    ("/v1/embeddings", {"model": "echo-emb", "input": ["one two", "three"]}, 2),
    ("/v1/embeddings", {"model": "stub-emb", "input": ["a b c", "d e", "f"]}, 3),
    ("/v1/embed", {"model": "echo-emb", "texts": ["hello there"]}, 1),
    ("/v2/embed", {"model": "stub-emb", "texts": ["x y", "z"], "embedding_types": ["float"]}, 2),
    ("/embed", {"inputs": ["tei one", "tei two", "tei three"]}, 3),
    ("/v1/rerank", {"model": "echo-rerank", "query": "q", "documents": ["a", "bb", "ccc"]}, 3),
    ("/v1/rerank", {"model": "echo-rerank-short", "query": "what", "documents": [LONG, "short"], "top_n": 1}, 2),
    ("/v2/rerank", {"model": "echo-rerank-short", "query": "what", "documents": ["x", LONG, LONG]}, 3),
    ("/v2/rerank", {"model": "stub-rerank", "query": "q", "documents": ["a", "b"]}, 2),
    ("/rerank", {"query": "q", "texts": ["one", "two", LONG]}, 3),
    ("/rerank", {"model": "echo-rerank-short", "query": "q", "texts": [LONG], "truncate": True}, 1),
    ("/rerank", {"model": "stub-rerank", "query": "q", "documents": ["a", "b", "c", "d"]}, 4),
]


def _series(gw, family: str) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for metric in gw.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == family:
                totals[sample.labels["key"]] += sample.value
    return dict(totals)


async def test_usage_per_key_is_exactly_what_the_answers_reported(aiohttp_client, aiohttp_server, tmp_path):
    stub = await aiohttp_server(make_app(None, "stub"))
    auth = {"api_keys": [{"name": name, "key": key} for key, name in KEYS.items()],
            "allow_anonymous_without_api_keys": False}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=_routing(str(stub.make_url("")).rstrip("/")),
                                                       auth=auth))
    told: dict[str, Counter[str]] = {name: Counter() for name in KEYS.values()}
    for n, (path, body, inputs) in enumerate(CALLS * 2):
        key = list(KEYS)[n % 2]
        resp = await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        answer = await resp.json()
        assert resp.status == 200, (path, answer)
        tokens = _reported(path, answer, resp.headers)
        assert tokens > 0, (path, answer)
        told[KEYS[key]].update(tokens=tokens, inputs=inputs, requests=1)
    # one refused call (a model the key may not see) is neither a request nor tokens
    refused = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"},
                                headers={"Authorization": f"Bearer {list(KEYS)[0]}"})
    assert refused.status == 404

    gw = gateway_of(client)
    assert _series(gw, "maas_usage_tokens_total") == {k: c["tokens"] for k, c in told.items()}
    assert _series(gw, "maas_usage_inputs_total") == {k: c["inputs"] for k, c in told.items()}
    assert _series(gw, "maas_usage_requests_total") == {k: c["requests"] for k, c in told.items()}


async def test_a_long_document_is_billed_for_every_window_scored(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=_routing("http://127.0.0.1:9")))
    whole = await client.post("/v1/rerank", json={"model": "echo-rerank", "query": "what", "documents": [LONG]})
    windows = await client.post("/v1/rerank", json={"model": "echo-rerank-short", "query": "what",
                                                    "documents": [LONG]})
    assert whole.status == windows.status == 200
    assert windows.headers["X-Chunked-Documents"] == "0"
    one, many = (await whole.json())["usage"]["total_tokens"], (await windows.json())["usage"]["total_tokens"]
    # the windows overlap by a quarter and each repeats the query: more tokens scored than the pair has
    assert many > one
    counter = gateway_of(client).snapshot.models["echo-rerank"].counter
    assert one == counter.count_query_documents("what", [LONG])[0]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
async def test_the_upstreams_own_count_is_what_is_billed(aiohttp_client, aiohttp_server, tmp_path, path):
    """On a TEI body nothing is counted per document, so the rerank service's own count stands."""
    stub = await aiohttp_server(make_app(None, "stub"))
    client = await serve(aiohttp_client, write_configs(
        tmp_path, routing=_routing(str(stub.make_url("")).rstrip("/"))))
    body = ({"model": "stub-rerank", "query": "q", "texts": ["a", "b", "c"], "truncate": True} if path == "/rerank"
            else {"model": "stub-rerank", "query": "q", "documents": ["a", "b", "c"]})
    resp = await client.post(path, json=body)
    answer = await resp.json()
    tokens = _reported(path, answer, resp.headers)
    assert _series(gateway_of(client), "maas_usage_tokens_total") == {"anonymous": tokens}
    if path == "/rerank":
        assert tokens == 3  # the stub counts one token per document
