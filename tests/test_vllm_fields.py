"""vLLM's and Infinity's embedding fields on a live router (the packaged MiniLM): each honoured
field gives the model's own answer for what it asks, each refused one a 400 in the dialect's
shape; a variant never gets another variant's cached vector; two aliases of one model, one per
token-id vocabulary, share the model's batches and cache entries."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import numpy as np
import pytest

from core.app import create_app
from core.config import Settings
from core.http import GATEWAY
from core.served import ModelCall
from core.variant import Variant
from tests.support.configs import copy_default_configs, write_yaml
from tests.support.processes import start_router

LOCAL = {"type": "local", "max_batch_size": 32, "max_wait_ms": 2}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
ROUTING = {
    "feature_flags": ["embedding_cache"],
    "defaults": {"embeddings": "minilm", "rerank": "rerank-base"},
    "embeddings": [
        {"model": "minilm", "served_name": MINILM, "prompts": "none", "upstream": LOCAL},
        {"model": "minilm-ids", "served_name": MINILM, "prompts": "none", "token_ids": "model", "upstream": LOCAL},
        # an upstream that cannot give vectors before normalisation: refused before it is ever called
        {"model": "remote", "served_name": "minilm", "upstream": {"type": "infinity", "url": "http://127.0.0.1:9"}},
    ],
    "rerank": [
        {"model": "rerank-base", "served_name": RERANKER, "max_top_k": 50, "upstream": LOCAL},
        {"model": "rerank-docs", "served_name": RERANKER, "max_top_k": 50, "upstream": LOCAL,
         "options": {"return_documents": True}},
        {"model": "rerank-remote", "served_name": "r", "upstream": {"type": "rerank", "url": "http://127.0.0.1:9"}},
    ],
}


def vllm_configs(dest):
    configs = copy_default_configs(dest)
    write_yaml(configs / "routing.yaml", ROUTING)
    return configs


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    work = tmp_path_factory.mktemp("vllm")
    server, base = start_router(vllm_configs(work / "configs"), work / "router.log")
    yield base
    server.stop()


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def vectors(url: str, body: dict, path: str = "/v1/embeddings") -> np.ndarray:
    resp = post(url, path, body)
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


def text_vector(url: str, text: str) -> np.ndarray:
    return vectors(url, {"model": "minilm", "input": [text]})[0]


def test_infinity_modality_text_is_served_and_other_modalities_are_refused(url):
    got = vectors(url, {"model": "minilm", "input": ["a red car"], "modality": "text", "dimensions": 0,
                        "encoding_format": "float", "user": "u1"}, path="/embeddings")
    np.testing.assert_allclose(got[0], text_vector(url, "a red car"), atol=1e-6)
    for modality in ("image", "audio"):
        resp = post(url, "/embeddings", {"model": "minilm", "input": "a red car", "modality": modality})
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["param"] == "modality" and "only text" in error["message"]


def test_truncate_prompt_tokens_keeps_the_last_tokens_and_says_so(url):
    text = "one two three four five six"  # one token a word, and [CLS] [SEP]
    resp = post(url, "/v1/embeddings", {"model": "minilm", "input": [text, "one"], "truncate_prompt_tokens": 5})
    assert resp.status_code == 200 and resp.headers["X-Truncated-Inputs"] == "0"
    got = np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got[0], text_vector(url, "four five six"), atol=1e-6)
    np.testing.assert_allclose(got[1], text_vector(url, "one"), atol=1e-6)
    right = vectors(url, {"model": "minilm", "input": text, "truncate_prompt_tokens": 5, "truncation_side": "right"})
    np.testing.assert_allclose(right[0], text_vector(url, "one two three"), atol=1e-6)
    plain = vectors(url, {"model": "minilm", "input": text, "truncate_prompt_tokens": 3, "add_special_tokens": False})
    np.testing.assert_allclose(plain[0], vectors(url, {"model": "minilm", "input": "four five six",
                                                       "add_special_tokens": False})[0], atol=1e-6)
    zero = post(url, "/v1/embeddings", {"model": "minilm", "input": "x", "truncate_prompt_tokens": 0})
    assert zero.status_code == 400


def test_truncate_prompt_tokens_minus_one_cuts_at_the_models_limit_instead_of_refusing(url):
    long_text = "word " * 300 + "end"
    assert post(url, "/v1/embeddings", {"model": "minilm", "input": long_text}).status_code == 400
    resp = post(url, "/v1/embeddings", {"model": "minilm", "input": long_text, "truncate_prompt_tokens": -1})
    assert resp.status_code == 200 and resp.headers["X-Truncated-Inputs"] == "0"
    kept = post(url, "/v1/embeddings", {"model": "minilm", "input": long_text, "truncate_prompt_tokens": 256})
    assert kept.json()["data"][0]["embedding"] == resp.json()["data"][0]["embedding"]  # MiniLM reads 256


def test_normalize_false_gives_the_pooled_vector_before_normalisation(url):
    texts = ["The cat sat on the mat.", "Berlin is the capital of Germany."]
    unit = vectors(url, {"model": "minilm", "input": texts})
    for field in ("normalize", "use_activation"):
        raw = vectors(url, {"model": "minilm", "input": texts, field: False})
        norms = np.linalg.norm(raw, axis=1)
        assert np.all(np.abs(norms - 1) > 0.1), norms  # MiniLM's pooled vectors are far from unit length
        np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)
    # dimensions cut the raw vector without renormalising it
    cut = vectors(url, {"model": "minilm", "input": texts, "normalize": False, "dimensions": 64})
    np.testing.assert_allclose(cut, raw[:, :64], atol=1e-6)
    tei = np.array(post(url, "/embed", {"inputs": texts, "normalize": False}).json(), dtype=np.float32)
    np.testing.assert_allclose(tei, raw, atol=1e-6)


def test_add_special_tokens_false_is_the_model_reading_the_text_alone(url):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from core.packaged import packaged_minilm_dir

    text = "Embeddings map text to vectors."
    got = vectors(url, {"model": "minilm", "input": text, "add_special_tokens": False})[0]
    folder = str(packaged_minilm_dir())
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    enc = tokenizer([text], add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state[0]
    want = hidden.mean(dim=0).numpy()  # MiniLM pools by the mean, then normalises
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)
    assert np.abs(got - text_vector(url, text)).max() > 1e-3
    usage = post(url, "/v1/embeddings", {"model": "minilm", "input": text, "add_special_tokens": False}).json()
    assert usage["usage"]["prompt_tokens"] == enc["input_ids"].shape[1]  # [CLS] and [SEP] not read, not counted


def test_a_variant_an_upstream_cannot_give_is_refused_before_it_is_called(url):
    for field in ("normalize", "add_special_tokens"):
        resp = post(url, "/v1/embeddings", {"model": "remote", "input": "x", field: False})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == field and "infinity" in resp.json()["error"]["message"]
    resp = post(url, "/v1/rerank", {"model": "rerank-remote", "query": "q", "documents": ["d"], "activation": False})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "activation"
    assert post(url, "/v1/embeddings", {"model": "minilm", "input": "x", "priority": 1}).status_code == 400
    assert post(url, "/v1/embeddings", {"model": "minilm", "input": "x", "priority": 0, "request_id": "r1",
                                        "embed_dtype": "float32", "endianness": "native",
                                        "padding": "do_not_pad"}).status_code == 200


def test_the_cache_never_serves_one_variant_for_another(url):
    text = "a sentence seen first without normalisation"
    first = post(url, "/v1/embeddings", {"model": "minilm", "input": text, "normalize": False})
    assert first.headers["X-Cache-Hits"] == "0"
    raw = np.array(first.json()["data"][0]["embedding"], dtype=np.float32)
    unit = post(url, "/v1/embeddings", {"model": "minilm", "input": text})
    assert unit.headers["X-Cache-Hits"] == "0"  # the raw vector is not this request's answer
    assert abs(np.linalg.norm(unit.json()["data"][0]["embedding"]) - 1) < 1e-5
    again = post(url, "/v1/embeddings", {"model": "minilm", "input": text, "normalize": False})
    assert again.headers["X-Cache-Hits"] == "1"
    np.testing.assert_array_equal(np.array(again.json()["data"][0]["embedding"], dtype=np.float32), raw)
    plain = post(url, "/v1/embeddings", {"model": "minilm", "input": text, "add_special_tokens": False})
    assert plain.headers["X-Cache-Hits"] == "0"
    assert post(url, "/v1/embeddings", {"model": "minilm", "input": text}).headers["X-Cache-Hits"] == "1"


def test_token_ids_are_read_in_the_aliases_vocabulary_or_the_requests_own(url):
    hello = text_vector(url, "hello world")
    own = [101, 7592, 2088, 102]  # MiniLM's [CLS] hello world [SEP]
    cl100k = [15339, 1917]  # OpenAI's "hello world"
    np.testing.assert_allclose(vectors(url, {"model": "minilm-ids", "input": [own]})[0], hello, atol=1e-6)
    np.testing.assert_allclose(vectors(url, {"model": "minilm", "input": [cl100k]})[0], hello, atol=1e-6)
    np.testing.assert_allclose(vectors(url, {"model": "minilm", "input": [own], "token_ids_vocabulary": "model"})[0],
                               hello, atol=1e-6)
    np.testing.assert_allclose(vectors(url, {"model": "minilm-ids", "input": [cl100k],
                                             "token_ids_vocabulary": "cl100k_base"})[0], hello, atol=1e-6)
    resp = post(url, "/v1/embeddings", {"model": "minilm-ids", "input": [[101, 99999, 102]]})
    assert resp.status_code == 400 and "own vocabulary of the model 'minilm-ids'" in resp.json()["error"]["message"]
    resp = post(url, "/v1/embeddings", {"model": "minilm", "input": [[300000]]})
    assert resp.status_code == 400 and "cl100k_base" in resp.json()["error"]["message"]
    vocabularies = {m: httpx.get(f"{url}/v1/models/{m}").json()["token_ids_vocabulary"]
                    for m in ("minilm", "minilm-ids")}
    assert vocabularies == {"minilm": "cl100k_base", "minilm-ids": "model"}


def test_two_aliases_of_one_model_share_its_cache_entries(url):
    text = "embedded through one alias, served to the other"
    assert post(url, "/v1/embeddings", {"model": "minilm", "input": text}).headers["X-Cache-Hits"] == "0"
    assert post(url, "/v1/embeddings", {"model": "minilm-ids", "input": text}).headers["X-Cache-Hits"] == "1"


async def test_two_aliases_of_one_model_share_its_scheduler_and_batches(aiohttp_client, tmp_path):
    config = vllm_configs(tmp_path)
    app = create_app(Settings(routing_path=str(config / "routing.yaml"), auth_path=str(config / "auth.yaml"),
                              rate_limits_path=str(config / "rate_limits.yaml")))
    await aiohttp_client(app)
    gateway = app[GATEWAY]
    await gateway.load()
    a, b = gateway.snapshot.models["minilm"], gateway.snapshot.models["minilm-ids"]
    assert a is not b and a.feed.scheduler is b.feed.scheduler and a.adapter is b.adapter
    calls: list[int] = []
    embed = a.adapter.embed

    async def counted(route, inputs, call):
        calls.append(len(inputs))
        return await embed(route, inputs, call)

    a.adapter.embed = counted  # type: ignore[method-assign]
    try:
        # cache off for this call: a (not its layer) goes straight to the scheduler
        got = await asyncio.gather(a._fresh(["first alias"], _context(a), ModelCall().queued_as, None),
                                   b._fresh(["second alias"], _context(b), ModelCall().queued_as, None))
    finally:
        del a.adapter.embed
    assert calls == [2]  # one batch for both aliases
    alone = await a.embed(["second alias"], ModelCall())
    np.testing.assert_allclose(got[1].vectors, alone.vectors, atol=1e-6)
    raw = await a.embed(["first alias"], ModelCall(), variant=Variant(normalize=False))
    assert abs(float(np.linalg.norm(raw.vectors[0])) - 1) > 0.1


def _context(model):
    from core.adapters import CallContext

    return CallContext(tokenizer=model.counter)


# --- rerank and score -------------------------------------------------------------------------------
QUERY = "What is the capital of Germany?"
DOCS = ["Paris is in France.", "Berlin is the capital of Germany.", "Cats sleep a lot.", "Germany borders France."]


def rerank_scores(url: str, model: str = "rerank-base", **extra) -> dict[int, float]:
    resp = post(url, "/v1/rerank", {"model": model, "query": QUERY, "documents": DOCS, **extra})
    assert resp.status_code == 200, resp.text
    return {r["index"]: r["relevance_score"] for r in resp.json()["results"]}


def test_a_pairs_score_equals_its_rerank_relevance_score(url):
    reranked = rerank_scores(url)
    for path in ("/score", "/v1/score"):
        resp = post(url, path, {"model": "rerank-base", "text_1": QUERY, "text_2": DOCS})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["object"] == "list" and body["model"] == "rerank-base" and isinstance(body["created"], int)
        assert [d["index"] for d in body["data"]] == list(range(len(DOCS)))
        assert all(d["object"] == "score" for d in body["data"])
        assert [d["score"] for d in body["data"]] == [reranked[i] for i in range(len(DOCS))]
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    for i, doc in enumerate(DOCS):  # one to one, text_1 as a list of one
        one = post(url, "/v1/score", {"model": "rerank-base", "text_1": [QUERY], "text_2": doc}).json()
        assert [d["score"] for d in one["data"]] == [reranked[i]]
    same = post(url, "/v1/score", {"model": "rerank-base", "text_1": [QUERY] * 2, "text_2": DOCS[:2]}).json()
    assert [d["score"] for d in same["data"]] == [reranked[0], reranked[1]]
    resp = post(url, "/v1/score", {"model": "rerank-base", "text_1": ["a", "b"], "text_2": ["c", "d"]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "text_1"
    assert post(url, "/v1/score", {"model": "minilm", "text_1": "a", "text_2": "b"}).status_code == 400


def test_activation_false_gives_the_logit_whose_sigmoid_is_the_score(url):
    scores = rerank_scores(url)
    for extra in ({"activation": False}, {"use_activation": False}, {"softmax": False}, {"raw_scores": True}):
        logits = rerank_scores(url, **extra)
        assert any(abs(v) > 1 for v in logits.values())  # logits, not probabilities
        for i, logit in logits.items():
            assert abs(1 / (1 + np.exp(-logit)) - scores[i]) < 1e-6
    assert rerank_scores(url, activation=True) == scores
    score = post(url, "/v1/score", {"model": "rerank-base", "text_1": QUERY, "text_2": DOCS, "activation": False})
    assert [d["score"] for d in score.json()["data"]] == [rerank_scores(url, activation=False)[i] for i in range(4)]
    tei = post(url, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert {r["index"]: r["score"] for r in tei} == rerank_scores(url, activation=False)


def test_return_documents_route_default_and_the_request_wins(url):
    def documents(model: str, **extra) -> list:
        resp = post(url, "/v1/rerank", {"model": model, "query": QUERY, "documents": DOCS, **extra})
        return [r.get("document") for r in resp.json()["results"]]

    assert documents("rerank-base") == [None] * 4  # the guide's default
    with_docs = documents("rerank-docs")
    assert sorted(d["text"] for d in with_docs) == sorted(DOCS)
    assert documents("rerank-docs", return_documents=False) == [None] * 4
    assert sorted(d["text"] for d in documents("rerank-base", return_documents=True)) == sorted(DOCS)


def test_rerank_truncate_prompt_tokens_reads_each_pair_to_that_many_tokens(url):
    long_doc = "Berlin is the capital of Germany. " + "It has many museums and parks. " * 20
    resp = post(url, "/v1/rerank", {"model": "rerank-base", "query": QUERY, "documents": [long_doc, "Paris."],
                                    "truncate_prompt_tokens": 24})
    assert resp.status_code == 200 and resp.headers["X-Truncated-Inputs"] == "0"
    cut = {r["index"]: r["relevance_score"] for r in resp.json()["results"]}
    # 24 tokens: [CLS] + the query's 7 + [SEP] + the document's first 14 + [SEP]
    want = post(url, "/v1/rerank", {"model": "rerank-base", "query": QUERY,
                                    "documents": ["Berlin is the capital of Germany. It has many museums and parks."]})
    assert abs(cut[0] - want.json()["results"][0]["relevance_score"]) < 1e-6
    resp = post(url, "/v1/rerank", {"model": "rerank-base", "query": QUERY, "documents": ["x"],
                                    "truncate_prompt_tokens": 5})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "truncate_prompt_tokens"


def test_openapi_lists_the_score_paths(url):
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    assert {"/score", "/v1/score"} <= set(paths)
    schema = paths["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"truncate_prompt_tokens", "normalize", "modality", "token_ids_vocabulary"} <= set(schema["properties"])


def test_cache_keys_tell_variants_apart_and_not_vocabularies():
    from core.config.routing import ModelRoute, UpstreamConfig
    from core.kinds import EMBEDDINGS
    from core.options import OptionSchema
    from plugins.cache.keys import item_keys, route_digest, scoped_digest

    route = ModelRoute(alias="a", kind=EMBEDDINGS, served_name=MINILM, enabled=True,
                       upstream=UpstreamConfig(type="local"))
    other = dataclasses.replace(route, alias="b", token_ids=ROUTING["embeddings"][1]["token_ids"])
    schema = OptionSchema()
    digest = route_digest(route, schema, schema)
    assert route_digest(other, schema, schema) == digest  # one model, two vocabularies: one set of entries
    # the default variant adds nothing: entries made before variants existed stay valid
    assert scoped_digest(digest, "s", Variant().changed()) == scoped_digest(digest, "s", {})
    variants = [Variant(), Variant(normalize=False), Variant(add_special_tokens=False),
                Variant(normalize=False, add_special_tokens=False)]
    keys = {item_keys(scoped_digest(digest, "s", v.changed()), ["same text"], False)[0] for v in variants}
    assert len(keys) == len(variants)
    # text and token ids never share a key, whatever they spell
    assert item_keys(digest, ["1"], False) != item_keys(digest, [[1]], True)


def test_a_variant_is_its_own_embedding_space(url):
    def space(**extra) -> str:
        resp = post(url, "/v1/embeddings", {"model": "minilm", "input": "space probe", **extra})
        assert resp.status_code == 200, resp.text
        return resp.headers["X-Embedding-Space"]

    default = space()
    assert space(normalize=True, add_special_tokens=True, truncate_prompt_tokens=64) == default
    others = {space(normalize=False), space(use_activation=False), space(add_special_tokens=False)}
    assert default not in others and len(others) == 2  # use_activation is normalize's other name
    resp = httpx.post(url + "/v1/embeddings", json={"model": "minilm", "input": "x", "normalize": False},
                      headers={"X-Expect-Embedding-Space": default}, timeout=60)
    assert resp.status_code == 409  # a client pinned to the normalised space is never given raw vectors
