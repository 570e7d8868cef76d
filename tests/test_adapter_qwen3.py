"""The ``qwen3`` adapter against a local OpenAI-compatible server that checks the key,
and how every HTTP adapter answers when its upstream misbehaves."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.support.openai_stub import stub_vector
from tests.support.processes import free_port, start_router
from tests.support.upstreams import router_configs, start_stub

KEY = "sk-qwen3-test-4f1c9a7e"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
FAULTS = ["malformed", "short", "slow", "error-infinity", "error-fastapi", "error-flat", "overloaded", "crash"]


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    server, url = start_stub(tmp_path_factory.mktemp("stub") / "stub.log", key=KEY)
    server.url = url
    yield server
    server.stop()


def _configs(dest, stub_url: str, **upstream_extra):
    up = {"type": "qwen3", "url": stub_url + "/v1", "timeout_ms": 1500, "retry_backoff_ms": 10, **upstream_extra}
    embeddings = [
        {"model": "qwen3-query", "served_name": "qwen3-embedding", "upstream": up,
         "options": {"query_instruction": INSTRUCTION}},
        {"model": "qwen3-doc", "served_name": "qwen3-embedding", "upstream": up},
        {"model": "no-usage", "served_name": "no-usage", "upstream": up},
        {"model": "dead", "upstream": {**up, "url": f"http://127.0.0.1:{free_port()}/v1"}},
        # widths: declared and wrong, not finite, and pinned from the first answer
        {"model": "declared-8", "served_name": "narrow", "upstream": up, "dimensions": 8},
        {"model": "nan", "served_name": "not-finite", "upstream": {**up, "encoding_format": "base64"}},
        {"model": "drift", "served_name": "drift", "upstream": up},
    ] + [{"model": f"fault-{name}", "served_name": name, "upstream": up} for name in FAULTS]
    return router_configs(dest, {"embeddings": embeddings, "rerank": [
        {"model": "qwen3-rerank", "served_name": "qwen3-reranker", "upstream": up}]})


@pytest.fixture(scope="module")
def router(stub, tmp_path_factory):
    work = tmp_path_factory.mktemp("qwen3-router")
    configs = _configs(work / "configs", stub.url)
    server, url = start_router(configs, work / "router.log", QWEN3_ENABLED="true", QWEN3_API_KEY=KEY,
                               ROUTER_LOG_LEVEL="DEBUG")
    server.url = url
    yield server
    server.stop()


def _embed(url: str, model: str, input, **extra) -> httpx.Response:
    return httpx.post(url + "/v1/embeddings", json={"model": model, "input": input, "encoding_format": "float"},
                      timeout=30, **extra)


def test_usage_is_the_upstreams_count_else_the_routers(router):
    # No limit needs the counts, so the router does not tokenize: usage is what the upstream counted
    # (one per word here; MiniLM's tokenizer would say 7 with [CLS] and [SEP]).
    assert _embed(router.url, "qwen3-doc", "one two three four five").json()["usage"]["prompt_tokens"] == 5
    # An upstream that leaves usage out: the router counts with the route's tokenizer.
    assert _embed(router.url, "no-usage", "one two three four five").json()["usage"]["prompt_tokens"] == 7


def test_query_instruction_is_prefixed_per_model(router):
    query = _embed(router.url, "qwen3-query", ["what is the capital of France?"]).json()
    doc = _embed(router.url, "qwen3-doc", ["Paris is the capital of France."]).json()
    np.testing.assert_allclose(query["data"][0]["embedding"],
                               stub_vector(f"Instruct: {INSTRUCTION}\nQuery:what is the capital of France?"),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(doc["data"][0]["embedding"], stub_vector("Paris is the capital of France."),
                               rtol=1e-6, atol=1e-6)


def test_rerank_and_request_id_reach_the_upstream(router, stub):
    answer = httpx.post(router.url + "/v1/rerank", headers={"X-Request-ID": "rid-qwen3-rerank-1"}, timeout=30,
                        json={"model": "qwen3-rerank", "query": "q", "documents": ["a", "b", "c"]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
    assert "rid-qwen3-rerank-1" in httpx.get(stub.url + "/_seen").json()["request_ids"]


@pytest.mark.parametrize("alias, status, code, says", [
    ("fault-malformed", 502, "upstream_error", "malformed JSON"),
    ("fault-short", 502, "upstream_bad_response", "1 vectors for 2 inputs"),
    ("fault-error-infinity", 400, "upstream_rejected", "ModelNotDeployedError: no such thing"),
    ("fault-error-fastapi", 400, "upstream_rejected", "input: List should have at most 4 items"),
    ("fault-error-flat", 400, "upstream_rejected", "input is too long for this model"),
    ("fault-overloaded", 503, "upstream_unavailable", "busy"),
    ("fault-crash", 502, "upstream_error", "HTTP 500"),
    ("dead", 502, "upstream_error", "unreachable"),
])
def test_upstream_failures_come_back_in_openai_shape(router, alias, status, code, says):
    answer = _embed(router.url, alias, ["one", "two"])
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert says in body["error"]["message"]
    if status == 503:
        assert answer.headers["Retry-After"] == "3"


def test_an_answer_of_the_wrong_width_or_not_finite_is_a_502_naming_the_route(router):
    for model, words in (("declared-8", "7-wide vectors; the model is 8 wide"), ("nan", "finite")):
        answer = _embed(router.url, model, ["a", "b"])
        assert answer.status_code == 502, answer.text
        assert f"'{model}'" in answer.json()["error"]["message"] and words in answer.json()["error"]["message"]
    first = _embed(router.url, "drift", ["a"])  # no width declared: the first answer's is pinned
    assert first.status_code == 200 and len(first.json()["data"][0]["embedding"]) == 8
    later = _embed(router.url, "drift", ["a"])
    assert later.status_code == 502 and "9-wide vectors; the model is 8 wide" in later.json()["error"]["message"]


def test_a_slow_upstream_times_out_within_the_route_timeout(router):
    started = time.monotonic()
    answer = _embed(router.url, "fault-slow", "hello")
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "upstream_timeout"
    # The stub sleeps 30 s; the route's timeout is 1.5 s. A generous bound, not a benchmark.
    assert time.monotonic() - started < 10
    assert _embed(router.url, "qwen3-doc", "still serving").status_code == 200


def test_the_key_never_appears_in_logs_or_metrics(router):
    metrics = httpx.get(router.url + "/metrics").text
    assert 'maas_upstream_requests_total{adapter="qwen3"' in metrics
    assert KEY not in metrics
    assert KEY not in router.log_text()


def test_a_wrong_key_is_an_upstream_failure_without_the_key(stub, tmp_path):
    configs = _configs(tmp_path / "configs", stub.url)
    wrong = "sk-wrong-key-8d2b"
    server, url = start_router(configs, tmp_path / "router.log", QWEN3_ENABLED="true", QWEN3_API_KEY=wrong,
                               ROUTER_LOG_LEVEL="DEBUG")
    try:
        answer = _embed(url, "qwen3-doc", "hello")
        assert answer.status_code == 502  # the gateway's credentials, not the client's
        assert answer.json()["error"]["code"] == "upstream_misconfigured"
        assert "Incorrect API key provided" not in answer.json()["error"]["message"]  # the upstream's words
        assert wrong not in answer.text
        log = server.log_text()
        assert "Incorrect API key provided: ***" in log  # the operator sees why, with the key blanked
        assert wrong not in log
    finally:
        server.stop()


def test_qwen3_models_do_not_exist_unless_enabled(stub, tmp_path):
    configs = _configs(tmp_path / "configs", stub.url)
    server, url = start_router(configs, tmp_path / "router.log", QWEN3_API_KEY=KEY)
    try:
        assert httpx.get(url + "/v1/models").json()["data"] == []
        answer = _embed(url, "qwen3-doc", "hello")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "model_not_found"
    finally:
        server.stop()


def test_a_key_from_a_secret_file_loses_its_newline_and_control_characters_are_refused():
    from adapters.qwen3 import SETTINGS, Qwen3Adapter, Qwen3Settings
    from core.adapters import AdapterContext
    from core.config import Settings, UpstreamConfig
    from core.errors import ConfigError
    from core.gateway import Gateway

    assert Gateway(Settings.from_env({"QWEN3_API_KEY": "sk-abc\n"})).settings.of(Qwen3Settings).api_key == "sk-abc"
    assert SETTINGS.read({"QWEN3_ENABLED": "true"}) == Qwen3Settings(enabled=True)
    up = UpstreamConfig(type="qwen3", urls=("http://127.0.0.1:9/v1",))
    bad = Settings(sections={Qwen3Settings: Qwen3Settings(enabled=True, api_key="sk-a\rb")})
    with pytest.raises(ConfigError, match="control characters") as info:
        Qwen3Adapter(up, AdapterContext(settings=bad))
    assert "sk-a" not in str(info.value)
