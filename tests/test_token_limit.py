"""Token limits: 413 naming the limit, the count and the item; the truncate_inputs flag; one tokenization."""

from __future__ import annotations

import pytest

from core.tokenization import TokenCounter
from tests.support.configs import write_yaml
from tests.support.inprocess import ECHO_ROUTING, gateway_of, serve, write_configs

EMB, RR = "/v1/embeddings", "/v1/rerank"
LONG = "one two three four five six seven eight nine ten"  # 10 words, 12 tokens with [CLS] [SEP]


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path, environ={"ROUTER_DOCUMENT_TOKEN_LIMIT": "8",
                                                "ROUTER_SAFE_REQUEST_TOKEN_LIMIT": "20"})
    return await serve(aiohttp_client, settings)


async def _error(resp, code: str, param: str) -> str:
    assert resp.status == 413, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == code and err["param"] == param and err["type"] == "invalid_request_error"
    return err["message"]


async def test_an_input_over_the_document_limit_is_413_naming_it(client):
    message = await _error(await client.post(EMB, json={"model": "echo-emb", "input": ["short", LONG]}),
                           "document_token_limit_exceeded", "input")
    assert "'input[1]' has 12 tokens" in message and "8" in message and "ROUTER_DOCUMENT_TOKEN_LIMIT" in message
    message = await _error(await client.post(RR, json={"model": "echo-rerank", "query": "q",
                                                       "documents": [LONG, "ok"]}),
                           "document_token_limit_exceeded", "documents")
    # a rerank document counts as the model sees it: [CLS] q [SEP] one .. ten [SEP]
    assert "'documents[0]' has 14 tokens" in message
    ids = list(range(1000, 1009))  # 9 token ids, counted as given
    message = await _error(await client.post(EMB, json={"model": "echo-emb", "input": [ids]}),
                           "document_token_limit_exceeded", "input")
    assert "has 9 tokens" in message


async def test_a_request_over_the_request_limit_is_413_naming_where(client):
    inputs = ["a b c d e f"] * 4  # 8 tokens each: 8, 16, 24 > 20 at input[2]
    message = await _error(await client.post(EMB, json={"model": "echo-emb", "input": inputs}),
                           "request_token_limit_exceeded", "input")
    assert "32 tokens" in message and "20" in message and "'input[2]'" in message
    assert "ROUTER_SAFE_REQUEST_TOKEN_LIMIT" in message
    ok = await client.post(EMB, json={"model": "echo-emb", "input": inputs[:2]})
    assert ok.status == 200


async def test_flag_truncate_inputs_cuts_instead_of_413(client, tmp_path):
    body = {"model": "echo-emb", "input": ["short", LONG], "encoding_format": "float"}
    assert (await client.post(EMB, json=body)).status == 413
    write_yaml(tmp_path / "routing.yaml", dict(ECHO_ROUTING, feature_flags=["truncate_inputs"]))
    await gateway_of(client).load()  # routing.yaml's feature_flags are reloadable
    resp = await client.post(EMB, json=body)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["usage"]["prompt_tokens"] == 3 + 8  # [CLS] short [SEP] + the cut input
    # the echo adapter embeds len(text): the model saw the cut text "one two three four five six"
    assert out["data"][1]["embedding"][0] == len("one two three four five six")
    ids = await client.post(EMB, json={"model": "echo-emb", "input": [list(range(1000, 1012))]})
    assert (await ids.json())["usage"]["prompt_tokens"] == 8
    rr = await client.post(RR, json={"model": "echo-rerank", "query": "q", "documents": [LONG],
                                      "return_documents": True})
    rr = await rr.json()  # the pair fits 8 tokens: [CLS] q [SEP] + 4 words + [SEP]
    assert rr["results"][0]["document"]["text"] == "one two three four"
    assert rr["usage"]["prompt_tokens"] == 8
    # the request limit still holds after cutting: 3 inputs cut to 8 tokens each = 24 > 20
    await _error(await client.post(EMB, json={"model": "echo-emb", "input": [LONG] * 3}),
                 "request_token_limit_exceeded", "input")


async def test_tokenized_once_and_the_count_serves_usage_and_the_budget(aiohttp_client, tmp_path, monkeypatch):
    settings = write_configs(tmp_path, auth={"api_keys": ["budget-key"]},
                             limits={"default": {"capacity": 10, "refill_rate": 1, "tokens_per_minute": 100}},
                             environ={"ROUTER_DOCUMENT_TOKEN_LIMIT": "50", "ROUTER_SAFE_REQUEST_TOKEN_LIMIT": "100"})
    client = await serve(aiohttp_client, settings)
    calls = []
    original = TokenCounter.count
    monkeypatch.setattr(TokenCounter, "count", lambda self, texts: calls.append(len(texts)) or original(self, texts))
    resp = await client.post(EMB, json={"model": "echo-emb", "input": ["hello world", LONG]},
                             headers={"X-API-Key": "budget-key"})
    assert resp.status == 200
    assert calls == [2]  # one batch call for the whole request
    used = (await resp.json())["usage"]["prompt_tokens"]
    assert used == 4 + 12
    assert resp.headers["x-ratelimit-remaining-tokens"] == str(100 - used)
