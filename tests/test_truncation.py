"""Truncation is a decision: over the model's limit a request is refused (embeddings' default),
or cut at the end or the start as the route or the request says, and the answer names what was
cut. Inputs are capped in characters before tokenizing. Against the packaged MiniLM (256 tokens)
and the ms-marco reranker (512), in process."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.tokenization import load_counter
from tests.support.inprocess import serve, write_configs

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ROUTING = {
    "embeddings": [
        {"model": "refuse", "served_name": MINILM, "upstream": {"type": "local"}},
        {"model": "end", "served_name": MINILM, "upstream": {"type": "local"}, "truncation": "end"},
        {"model": "start", "served_name": MINILM, "upstream": {"type": "local"}, "truncation": "start"},
    ],
    "rerank": [{"model": "rerank", "served_name": "cross-encoder/ms-marco-MiniLM-L-12-v2",
                "upstream": {"type": "local"}}],
}
LONG = " ".join(f"word{i}" for i in range(400))  # about 1,200 WordPiece tokens


@pytest.fixture(scope="module")
def counter():
    return load_counter(MINILM)


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    return await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING))


async def _embed(client, model, texts, **extra):
    resp = await client.post("/v1/embeddings", json={"model": model, "input": texts, "encoding_format": "float",
                                                     **extra})
    return resp, await resp.json()


async def test_over_the_limit_is_refused_by_default_naming_item_count_and_limit(client, counter):
    resp, body = await _embed(client, "refuse", ["short", LONG])
    assert resp.status == 400 and body["error"]["code"] == "context_length_exceeded"
    full = counter.count([LONG])[0]
    assert f"'input[1]' has {full} tokens" in body["error"]["message"] and "256 tokens" in body["error"]["message"]
    resp, body = await _embed(client, "refuse", ["short", "fits well"])
    assert resp.status == 200 and "X-Truncated-Inputs" not in resp.headers


async def test_end_and_start_cut_as_said_and_say_so(client, counter):
    resp, body = await _embed(client, "end", ["short", LONG])
    assert resp.status == 200 and resp.headers["X-Truncated-Inputs"] == "1"
    head = counter.truncate(LONG, 256)
    _, alone = await _embed(client, "end", [head])
    np.testing.assert_allclose(body["data"][1]["embedding"], alone["data"][0]["embedding"], rtol=1e-5, atol=1e-6)
    assert counter.count([head])[0] <= 256 and body["usage"]["prompt_tokens"] == 3 + counter.count([head])[0]
    resp, body = await _embed(client, "start", [LONG])
    tail = counter.truncate_start(LONG, 256)
    assert resp.headers["X-Truncated-Inputs"] == "0" and tail.endswith("word399") and not tail.startswith("word0 ")
    _, alone = await _embed(client, "start", [tail])
    np.testing.assert_allclose(body["data"][0]["embedding"], alone["data"][0]["embedding"], rtol=1e-5, atol=1e-6)


async def test_the_request_choice_wins_over_the_route(client):
    resp, _ = await _embed(client, "end", [LONG], truncation=False)  # Voyage: no cutting allowed
    assert resp.status == 400
    resp, _ = await _embed(client, "refuse", [LONG], truncation=True)
    assert resp.status == 200 and resp.headers["X-Truncated-Inputs"] == "0"


async def test_a_huge_word_is_refused_or_cut_before_it_is_tokenized(client):
    word = "x" * 15_000_000  # one WordPiece [UNK]: as tokens it would count as 3
    started = time.perf_counter()
    resp, body = await _embed(client, "refuse", [word])
    assert resp.status == 400 and "15000000 characters" in body["error"]["message"]
    resp, body = await _embed(client, "end", [word])
    assert resp.status == 200 and resp.headers["X-Truncated-Inputs"] == "0"
    print(f"two 15 MB inputs answered in {time.perf_counter() - started:.2f} s")  # tokenizing it took 22-29 s


FILLER = " ".join(["The committee met again to discuss the agenda and minutes of the previous session."] * 45)
BERLIN = FILLER + " Berlin has a population of about 3.7 million registered inhabitants."
HAMBURG = "Hamburg is a port city in northern Germany on the river Elbe."


async def test_a_long_document_is_read_whole_in_windows_and_takes_its_best_score(client, counter):
    assert counter.count([BERLIN])[0] > 600  # the answer sits past the model's 512-token window
    body = {"model": "rerank", "query": "How many people live in Berlin?", "documents": [HAMBURG, BERLIN],
            "return_documents": True}
    resp = await client.post("/v1/rerank", json=body)
    answer = await resp.json()
    assert resp.status == 200 and resp.headers["X-Chunked-Documents"] == "1"
    assert [r["index"] for r in answer["results"]] == [1, 0]  # Berlin first, as a reader would rank it
    assert answer["results"][0]["document"]["text"] == BERLIN  # the document as sent, not a piece
    assert answer["usage"]["prompt_tokens"] > counter.count([BERLIN])[0]  # the query counts once per window
    cut = await client.post("/v2/rerank", json={"model": "rerank", "query": body["query"],
                                                "documents": [HAMBURG, BERLIN], "max_tokens_per_doc": 300})
    assert cut.headers["X-Truncated-Inputs"] == "1"  # what it was told not to read is said
    head_only = {r["index"]: r["relevance_score"] for r in (await cut.json())["results"]}
    # told to read 300 tokens, the answer at ~680 is not read: the document scores as its filler
    assert answer["results"][0]["relevance_score"] > 5 * head_only[1]


async def test_a_document_past_what_is_read_says_so(client, counter):
    huge = " ".join(f"word{i}" for i in range(2500))  # over 4,096 tokens, the most read of one document
    assert counter.count([huge])[0] > 4096
    resp = await client.post("/v1/rerank", json={"model": "rerank", "query": "q", "documents": ["short", huge]})
    assert resp.status == 200
    assert resp.headers["X-Chunked-Documents"] == "1" and resp.headers["X-Truncated-Inputs"] == "1"
    resp = await client.post("/v1/rerank", json={"model": "rerank", "query": "q", "documents": [huge[:9000]]})
    assert resp.status == 200 and "X-Truncated-Inputs" not in resp.headers  # read whole, in windows


async def test_rerank_refuses_a_long_document_when_the_request_forbids_cutting(client):
    resp = await client.post("/v1/rerank", json={"model": "rerank", "query": "q", "documents": [LONG],
                                                 "truncation": False})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "context_length_exceeded"


async def test_models_publish_their_input_limit(client):
    one = await (await client.get("/v1/models/refuse")).json()
    assert one["max_input_tokens"] == 256 and one["dimensions"] == 384
