"""Nothing one request sends can stall the gateway: each input is capped (ROUTER_MAX_*), a
request over a cap is refused with a 413 naming it, in the caller's dialect, before anything
tokenizes it; what stays within the caps but still grows with its size runs off the event loop,
so a /health/live sent beside it is answered before it finishes (order, never timings).

The hostile requests are the ones that stalled the gateway: a 4 MB /tokenize text, an 8 MB
rerank query, 38 rerank documents of 409k characters, 16 MB of token ids and 2,048 × 1,250 ids.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from core.config import Settings
from core.config.caps import InputCaps
from core.dialects.openai import OpenAIEmbeddings
from core.fields import field_table
from core.gateway import Gateway
from core.tokenization import TokenCounter
from tests.support.inprocess import serve, write_configs
from tests.support.processes import ROOT

ROUTING: dict[str, Any] = {
    "embeddings": [{"model": "echo-emb", "upstream": {"type": "echo", "dim": 4}, "token_ids": "model"}],
    "rerank": [{"model": "echo-rerank", "upstream": {"type": "echo"}, "max_input_tokens": 512}],
    "defaults": {"embeddings": "echo-emb", "rerank": "echo-rerank"},
}
WORDS = " ".join(f"word{i}" for i in range(20_000))  # about 140k characters, 60k tokens


@pytest.fixture
def tokenized(monkeypatch) -> list[str]:
    """The tokenizer's work as it starts and ends (a spy on the real tokenizer: it still runs),
    with the health checks answered meanwhile (``_race`` adds them)."""
    seen: list[str] = []
    for name in ("count", "count_query_documents", "windows", "tokenize", "encode"):
        real = getattr(TokenCounter, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            seen.append(f"{_name}:start")
            try:
                return _real(self, *args, **kwargs)
            finally:
                seen.append(f"{_name}:end")
        monkeypatch.setattr(TokenCounter, name, spy)
    return seen


def health_during(events: list[str], work: str) -> bool:
    """A health check was answered while ``work`` ran (between its first start and last end)."""
    starts = [i for i, e in enumerate(events) if e == f"{work}:start"]
    ends = [i for i, e in enumerate(events) if e == f"{work}:end"]
    return bool(starts) and any(e == "health" for e in events[starts[0]:ends[-1]])


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    return await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING))


async def _race(client, path: str, body: Any, events: list[str] | None = None) -> tuple[int, Any, int]:
    """Send ``body`` to ``path`` and ping /health/live beside it until it is answered; return its
    status, its answer and how many health checks were answered before it was (each noted in
    ``events`` as "health")."""
    data = json.dumps(body, separators=(",", ":")).encode()
    hostile = asyncio.ensure_future(client.post(path, data=data, headers={"Content-Type": "application/json"}))
    answered = 0
    while not hostile.done():
        health = await client.get("/health/live")
        if health.status == 200 and not hostile.done():
            answered += 1
            if events is not None:
                events.append("health")
        await asyncio.sleep(0)
    resp = await hostile
    return resp.status, await resp.json(), answered


async def test_a_huge_tokenize_text_is_refused_before_it_is_tokenized(client, tokenized):
    status, body, _ = await _race(client, "/tokenize", {"inputs": "x " * 2_000_000})  # 4 MB
    assert status == 413 and body["error"]["code"] == "input_too_large"
    assert "ROUTER_MAX_TOKENIZE_CHARS" in body["error"]["message"] and "4000000 characters" in body["error"]["message"]
    assert tokenized == []


async def test_a_tokenize_answer_over_its_token_cap_is_refused_before_it_is_built(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path, routing=ROUTING)
    client = await serve(aiohttp_client, replace(settings, caps=InputCaps(tokenize_tokens=1000)))
    resp = await client.post("/tokenize", json={"inputs": WORDS[:20_000]})
    body = await resp.json()
    assert resp.status == 413 and "ROUTER_MAX_TOKENIZE_TOKENS" in body["error"]["message"], body
    resp = await client.post("/tokenize", json={"inputs": "hello world"})
    assert resp.status == 200 and [t["text"] for t in (await resp.json())[0]] == ["[CLS]", "hello", "world", "[SEP]"]


async def test_a_big_tokenize_within_the_caps_lets_health_checks_through(client, tokenized):
    status, body, _ = await _race(client, "/tokenize", {"inputs": [WORDS[:100_000], "hello world"]}, tokenized)
    assert status == 200 and len(body) == 2 and len(body[0]) > 10_000
    assert health_during(tokenized, "tokenize")  # tokenized and its answer built off the event loop


async def test_a_huge_rerank_query_is_refused_before_it_is_tokenized(client, tokenized):
    status, body, _ = await _race(client, "/v1/rerank", {"model": "echo-rerank", "query": "q" * 8_000_000,
                                                          "documents": ["a", "b"]})
    assert status == 413 and "ROUTER_MAX_QUERY_CHARS" in body["error"]["message"]
    assert body["error"]["param"] == "query" and tokenized == []


async def test_long_rerank_documents_over_the_cap_are_refused_in_the_callers_dialect(client, tokenized):
    documents = ["word " * 81_920] * 38  # 38 documents of 409,600 characters
    status, body, answered = await _race(client, "/v2/rerank", {"model": "echo-rerank", "query": "q",
                                                                "documents": documents})
    assert status == 413 and "ROUTER_MAX_RERANK_CHARS" in body["message"]  # Cohere's error shape
    assert tokenized == []
    assert answered >= 1  # the 15 MB body was parsed off the event loop


async def test_rerank_windows_are_capped_and_big_windowing_runs_off_the_loop(aiohttp_client, tmp_path, client,
                                                                             tokenized):
    documents = [WORDS[:100_000]] * 4  # each read in windows of the model's 512 tokens
    status, body, _ = await _race(client, "/v1/rerank", {"model": "echo-rerank", "query": "q",
                                                         "documents": documents}, tokenized)
    assert status == 200 and len(body["results"]) == 4
    assert health_during(tokenized, "windows")
    settings = write_configs(tmp_path / "small", routing=ROUTING)
    capped = await serve(aiohttp_client, replace(settings, caps=InputCaps(rerank_pairs=5)))
    resp = await capped.post("/v1/rerank", json={"model": "echo-rerank", "query": "q", "documents": documents})
    error = (await resp.json())["error"]
    assert resp.status == 413 and "ROUTER_MAX_RERANK_PAIRS" in error["message"]


@pytest.mark.parametrize(("inputs", "cap", "where"), [
    ([list(range(8000))] * 350, "ROUTER_MAX_TOKEN_IDS_PER_REQUEST", "The request"),  # 2.8M ids, 14 MB
    ([list(range(1250))] * 2048, "ROUTER_MAX_TOKEN_IDS_PER_REQUEST", "The request"),
    ([[1, 2], list(range(40000))], "ROUTER_MAX_TOKEN_IDS_PER_INPUT", "'input[1]'"),
])
async def test_token_id_arrays_over_a_cap_are_refused(client, tokenized, inputs, cap, where):
    status, body, _ = await _race(client, "/v1/embeddings", {"model": "echo-emb", "input": inputs})
    assert status == 413 and cap in body["error"]["message"] and body["error"]["message"].startswith(where)
    assert tokenized == []


async def test_token_ids_within_the_caps_are_served(client):
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": [list(range(8192))] * 2})
    assert resp.status == 200 and len((await resp.json())["data"]) == 2


def test_the_caps_are_settings_with_documented_defaults():
    caps = Settings.from_env({"ROUTER_MAX_QUERY_CHARS": "100", "ROUTER_MAX_TOKEN_IDS_PER_INPUT": "7"}).caps
    assert caps.query_chars == 100 and caps.token_ids_per_input == 7
    assert caps.tokenize_chars == InputCaps().tokenize_chars
    assert Settings.from_env({}).caps == InputCaps()
    table = field_table(Gateway(Settings()))  # what `maas check-config --fields` prints
    operations = (ROOT / "OPERATIONS.md").read_text()
    for env in InputCaps.ENV.values():
        assert f"| `{env}` |" in table and f"| `{env}` |" in operations


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_a_big_answer_is_rendered_off_the_loop(aiohttp_client, tmp_path, monkeypatch, encoding):
    routing = {"embeddings": [{"model": "wide", "upstream": {"type": "echo", "dim": 4096}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    events: list[str] = []
    real = OpenAIEmbeddings.render

    def spy(self, *args):
        events.append("render:start")
        try:
            return real(self, *args)
        finally:
            events.append("render:end")
    monkeypatch.setattr(OpenAIEmbeddings, "render", spy)
    status, body, _ = await _race(client, "/v1/embeddings", {"model": "wide", "input": ["x"] * 2048,
                                                             "encoding_format": encoding}, events)
    assert status == 200 and len(body["data"]) == 2048  # 8M values, as lists or base64
    assert health_during(events, "render")


async def test_the_requests_timeout_covers_the_gateways_own_work(aiohttp_client, tmp_path):
    routing = {"rerank": [{"model": "hurried", "upstream": {"type": "echo", "timeout_ms": 1},
                           "max_input_tokens": 512}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    resp = await client.post("/v1/rerank", json={"model": "hurried", "query": "q", "documents": [WORDS[:100_000]] * 4})
    error = (await resp.json())["error"]
    assert resp.status == 504 and error["code"] == "request_timeout"  # windowing outlived it: not read on after
