"""The router in front of a real infinity-emb server serving the packaged MiniLM."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.support.processes import start_router
from tests.support.upstreams import router_configs

pytestmark = pytest.mark.infinity

TEXTS = ["The cat sits on the mat.", "A feline rests on a rug.", "Stocks fell on Friday."]


@pytest.fixture(scope="module")
def router(infinity_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("infinity-router")
    upstream = {"type": "infinity", "url": infinity_server.url, "timeout_ms": 10000}
    configs = router_configs(work / "configs", {
        "embeddings": [
            # a client that tokenizes with the model's own WordPiece vocabulary
            {"model": "minilm-inf", "served_name": "minilm", "upstream": upstream, "token_ids": "model"},
            {"model": "minilm-inf-float", "served_name": "minilm",
             "upstream": {**upstream, "encoding_format": "float"}},
        ],
        # Infinity serves no reranker here: it answers rerank with its own error body.
        "rerank": [{"model": "not-a-reranker", "served_name": "minilm", "upstream": upstream}],
    })
    server, url = start_router(configs, work / "router.log")
    yield url
    server.stop()


def _direct(infinity_url: str, texts: list[str]) -> np.ndarray:
    answer = httpx.post(infinity_url + "/v1/embeddings", json={"model": "minilm", "input": texts}, timeout=30)
    answer.raise_for_status()
    return np.array([d["embedding"] for d in sorted(answer.json()["data"], key=lambda d: d["index"])])


def _embed(router: str, **body) -> httpx.Response:
    return httpx.post(router + "/v1/embeddings", json=body, timeout=30)


@pytest.mark.parametrize("alias", ["minilm-inf", "minilm-inf-float"])
def test_router_answers_what_infinity_answers(router, infinity_server, alias):
    direct = _direct(infinity_server.url, TEXTS)
    answer = _embed(router, model=alias, input=TEXTS, encoding_format="float")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == alias
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    via_router = np.array([d["embedding"] for d in body["data"]])
    assert via_router.shape == (3, 384)
    np.testing.assert_allclose(via_router, direct, rtol=1e-5, atol=1e-6)
    assert body["usage"]["prompt_tokens"] > 0


def test_base64_and_dimensions_through_infinity(router, infinity_server):
    direct = _direct(infinity_server.url, TEXTS[:1])[0]
    b64 = _embed(router, model="minilm-inf", input=TEXTS[0], encoding_format="base64").json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, direct, rtol=1e-5, atol=1e-6)
    cut = _embed(router, model="minilm-inf", input=TEXTS[0], encoding_format="float", dimensions=64).json()
    expected = direct[:64] / np.linalg.norm(direct[:64])
    np.testing.assert_allclose(cut["data"][0]["embedding"], expected, rtol=1e-5, atol=1e-6)


def test_token_id_input_is_decoded_for_infinity(router, infinity_server):
    # MiniLM's WordPiece ids for "hello world"; Infinity itself only takes text.
    answer = _embed(router, model="minilm-inf", input=[[7592, 2088]], encoding_format="float")
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["data"][0]["embedding"], _direct(infinity_server.url, ["hello world"])[0],
                               rtol=1e-5, atol=1e-6)
    bad = _embed(router, model="minilm-inf", input=[[10**7]])
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


def test_router_checks_model_names_itself(router):
    # Infinity would embed with its one model under any name; the router must say 404.
    answer = _embed(router, model="bge-m3", input="hello")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_infinity_error_body_is_normalised(router):
    answer = httpx.post(router + "/v1/rerank", json={"model": "not-a-reranker", "query": "q",
                                                     "documents": ["a", "b"]}, timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "does not support `rerank`" in error["message"]
    assert error["code"] == "upstream_rejected"


def test_infinity_fastapi_validation_error_is_normalised(router):
    # The fixture caps Infinity at 16 inputs per request; the router allows more.
    answer = _embed(router, model="minilm-inf", input=[f"text {i}" for i in range(17)])
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "detail" not in answer.json()
    assert "at most 16" in error["message"] and "input" in error["message"]
    assert _embed(router, model="minilm-inf", input="still serving").status_code == 200
