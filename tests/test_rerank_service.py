"""The rerank service as a real process (maas serve-rerank), and the router's ``rerank`` adapter."""

from __future__ import annotations

import asyncio
import json
import re
import sys

import httpx
import pytest
from tokenizers import Tokenizer

from core.packaged import packaged_reranker_dir
from tests.support.processes import ServerProcess, base_env, free_port, start_router
from tests.support.upstreams import router_configs, start_rerank_service

MODEL = "cross-encoder/ms-marco-MiniLM-L-12-v2"
QUERY = "How many people live in Berlin?"
DOCS = ["Berlin has a population of 3,520,031 registered inhabitants.",
        "New York City is famous for the Metropolitan Museum of Art.",
        "Bananas are a good source of potassium."]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log = tmp_path_factory.mktemp("rerank") / "rerank.log"
    # No RERANK_MODEL_NAME: the packaged cross-encoder. A long batch delay makes batching visible.
    server, url = start_rerank_service(log, RERANK_MODEL_MAPPING=json.dumps({"rerank-base": MODEL}),
                                       RERANK_MAX_DOCUMENTS="5", RERANK_MAX_DOCUMENT_LENGTH="200",
                                       RERANK_BATCH_DELAY_MS="250")
    yield url
    server.stop()


def _rerank(url: str, path: str = "/rerank", **body) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30)


def test_models_lists_the_model_and_its_aliases(service):
    data = httpx.get(service + "/v1/models").json()["data"]
    assert {m["id"] for m in data} == {MODEL, "rerank-base"}
    assert {m["root"] for m in data} == {MODEL}


def test_rerank_orders_by_relevance_and_counts_tokens(service):
    answer = _rerank(service, model="rerank-base", query=QUERY, documents=DOCS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "rerank-base"
    assert [r["index"] for r in body["results"]][0] == 0
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5 > scores[-1]
    tokenizer = Tokenizer.from_file(str(packaged_reranker_dir() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads every pair to 512; usage counts real tokens
    expected = sum(len(tokenizer.encode(QUERY, d).ids) for d in DOCS)
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_top_n_top_k_and_documents(service):
    top_k = _rerank(service, "/v1/rerank", model=MODEL, query=QUERY, documents=DOCS, top_k=1).json()
    assert [r["index"] for r in top_k["results"]] == [0]
    top_n = _rerank(service, query=QUERY, documents=[{"text": d} for d in DOCS], top_n=2,
                    return_documents=True).json()
    assert [r["document"]["text"] for r in top_n["results"]][0] == DOCS[0]
    assert len(top_n["results"]) == 2


@pytest.mark.parametrize("body, status, param", [
    ({"query": QUERY, "documents": DOCS * 2}, 400, "documents"),           # RERANK_MAX_DOCUMENTS=5
    ({"query": QUERY, "documents": ["x" * 201]}, 400, "documents"),        # RERANK_MAX_DOCUMENT_LENGTH=200
    ({"model": "bge-reranker", "query": QUERY, "documents": DOCS}, 404, "model"),
    ({"query": "", "documents": DOCS}, 400, "query"),
    # the service scores with its sigmoid, whole pairs: what it cannot honour it refuses, never ignores
    ({"query": QUERY, "documents": DOCS, "activation": False}, 400, "activation"),
    ({"query": QUERY, "documents": DOCS, "truncate_prompt_tokens": 8}, 400, "truncate_prompt_tokens"),
])
def test_bad_requests_get_openai_errors(service, body, status, param):
    answer = _rerank(service, **body)
    assert answer.status_code == status
    assert answer.json()["error"]["param"] == param
    assert _rerank(service, query=QUERY, documents=DOCS[:1]).status_code == 200


async def test_concurrent_requests_share_batches(service):
    def batches() -> float:
        text = httpx.get(service + "/metrics").text
        return float(re.search(r"^rerank_batch_size_count (\S+)$", text, re.M).group(1))

    before = batches()
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(*[client.post(service + "/rerank", json={"query": QUERY, "documents": [d]})
                                         for d in DOCS + DOCS[:1]])
    assert all(a.status_code == 200 for a in answers)
    assert batches() - before < 4  # four one-pair requests inside one 250 ms window: fewer than four batches


async def test_queue_timeout_answers_503_with_retry_after(tmp_path):
    server, url = start_rerank_service(tmp_path / "rerank.log", RERANK_MAX_BATCH_SIZE="1",
                                       RERANK_BATCH_DELAY_MS="0", RERANK_QUEUE_TIMEOUT_MS="1")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*[client.post(url + "/rerank", json={"query": QUERY, "documents": DOCS})
                                             for _ in range(6)])
        busy = [a for a in answers if a.status_code == 503]
        assert busy, [a.status_code for a in answers]
        assert all(a.status_code in (200, 503) for a in answers)
        assert int(busy[0].headers["Retry-After"]) >= 1
        assert busy[0].json()["error"]["code"] == "queue_timeout"
        assert _rerank(url, query=QUERY, documents=DOCS[:1]).status_code == 200
    finally:
        server.stop()


def test_a_torch_cross_encoder_folder_with_int8(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from core.packaged import packaged_minilm_dir as _packaged_minilm

    folder = tmp_path / "tiny-ce"
    tokenizer = BertTokenizerFast(vocab_file=str(_packaged_minilm() / "vocab.txt"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    server, url = start_rerank_service(tmp_path / "rerank.log", RERANK_MODEL_NAME=str(folder),
                                       RERANK_QUANTIZATION="int8", RERANK_DEVICE="cpu")
    try:
        models = httpx.get(url + "/v1/models").json()["data"]
        assert [(m["id"], m["backend"]) for m in models] == [(str(folder), "torch-int8")]
        body = _rerank(url, query=QUERY, documents=DOCS).json()
        assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
        assert all(0.0 <= r["relevance_score"] <= 1.0 for r in body["results"])
        assert body["usage"]["prompt_tokens"] > 3 * len(QUERY.split())
    finally:
        server.stop()


def test_gpu_without_a_gpu_fails_clearly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    port = free_port()
    server = ServerProcess([sys.executable, "-m", "core.cli", "serve-rerank", "--host", "127.0.0.1",
                            "--port", str(port)], env=base_env(RERANK_DEVICE="gpu"), log_path=tmp_path / "gpu.log")
    try:
        code = server.proc.wait(120)
    finally:
        server.stop()
    assert code != 0
    assert "device 'gpu' requested" in server.log_path.read_text()


def test_router_reranks_through_the_service(service, tmp_path):
    configs = router_configs(tmp_path / "configs", {"rerank": [{
        "model": "rerank-remote", "served_name": "rerank-base", "max_top_k": 2,
        "upstream": {"type": "rerank", "url": service, "timeout_seconds": 10}}, {
        "model": "rerank-split", "served_name": "rerank-base",
        "upstream": {"type": "rerank", "url": service, "timeout_seconds": 10, "max_documents": 5}}]})
    router, url = start_router(configs, tmp_path / "router.log")
    try:
        direct = _rerank(service, model="rerank-base", query=QUERY, documents=DOCS).json()
        answer = httpx.post(url + "/v1/rerank", json={"model": "rerank-remote", "query": QUERY,
                                                      "documents": DOCS, "top_n": 3}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "rerank-remote"
        assert len(body["results"]) == 2  # max_top_k caps top_n
        for got, want in zip(body["results"], direct["results"][:2], strict=True):
            assert got["index"] == want["index"]
            assert got["relevance_score"] == pytest.approx(want["relevance_score"], abs=1e-5)
        # Too many documents for the service: its 400 comes back in the OpenAI shape.
        too_many = httpx.post(url + "/v1/rerank", json={"model": "rerank-remote", "query": QUERY,
                                                        "documents": DOCS * 2}, timeout=30)
        assert too_many.status_code == 400
        assert "at most 5" in too_many.json()["error"]["message"]
        # Told the service's RERANK_MAX_DOCUMENTS, the router sends a longer list as several calls.
        split = httpx.post(url + "/v1/rerank", json={"model": "rerank-split", "query": QUERY,
                                                     "documents": DOCS * 2}, timeout=30)
        assert split.status_code == 200, split.text
        scores = {r["index"]: r["relevance_score"] for r in split.json()["results"]}
        assert len(scores) == 2 * len(DOCS)
        for i in range(len(DOCS)):  # each copy scores as the original, wherever its call was
            assert scores[i] == pytest.approx(scores[i + len(DOCS)], abs=1e-6)
    finally:
        router.stop()
