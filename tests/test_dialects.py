"""Every wire format over one chain, in process on the echo adapter: shapes, strictness, errors by
path, quantised outputs computed from the float vector, prompts by input type, truncation controls,
TEI's defaults, models scoped by key, CORS, Allow on 405 and spread-out retry hints."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from core.dialects.quantize import quantize
from tests.support.inprocess import serve, write_configs

ROUTING = {
    "defaults": {"embeddings": "echo-emb", "rerank": "echo-rerank"},
    "embeddings": [
        {"model": "echo-emb", "upstream": {"type": "echo", "dim": 16}, "max_input_tokens": 12,
         "prompts": {"query": "query: ", "document": "passage: ", "classification": "", "clustering": ""}},
        {"model": "echo-plain", "upstream": {"type": "echo", "dim": 16}},
    ],
    "rerank": [{"model": "echo-rerank", "upstream": {"type": "echo"}, "max_input_tokens": 64}],
}
KEYS = {"api_keys": [{"key": "k-all", "name": "all"}, {"key": "k-rerank", "name": "narrow", "models": ["echo-rerank"]}]}
ALL = {"Authorization": "Bearer k-all"}


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    return await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING, auth=KEYS))


async def _post(client, path, body, headers=ALL):
    resp = await client.post(path, json=body, headers=headers)
    return resp.status, await resp.json()


def _echo(text: str, dim: int = 16) -> np.ndarray:
    """What the echo adapter gives for ``text``: [len, 1, 0...]."""
    v = np.zeros(dim, dtype=np.float32)
    v[0], v[1] = len(text), 1.0
    return v


@pytest.mark.parametrize("path, body, field", [
    ("/v1/embeddings", {"model": "echo-emb", "input": "x", "output_dtyp": "int8"}, "output_dtyp"),
    ("/v1/rerank", {"model": "echo-rerank", "query": "q", "documents": ["a"], "rank_fields": ["x"]}, "rank_fields"),
    ("/v1/embed", {"texts": ["x"], "model": "echo-emb", "embedding_type": ["int8"]}, "embedding_type"),
    ("/v2/embed", {"texts": ["x"], "model": "echo-emb", "dimensions": 8}, "dimensions"),
    ("/v2/rerank", {"model": "echo-rerank", "query": "q", "documents": ["a"], "top_k": 1}, "top_k"),
    ("/embed", {"inputs": "x", "normalise": True}, "normalise"),
    ("/rerank", {"query": "q", "texts": ["a"], "return_texts": True}, "return_texts"),
    ("/tokenize", {"inputs": "x", "add_special": True}, "add_special"),
])
async def test_an_unknown_field_is_a_400_naming_it_in_the_paths_error_shape(client, path, body, field):
    status, answer = await _post(client, path, body)
    assert status == 400
    cohere = path in ("/v1/embed", "/v2/embed", "/v2/rerank")
    message = answer["message"] if cohere else answer["error"]["message"]
    assert f"'{field}'" in message
    if not cohere:
        assert answer["error"]["param"] == field and answer["error"]["code"] == "unknown_parameter"
    else:
        assert set(answer) == {"message"}


async def test_cohere_errors_are_cohere_shaped_for_every_failure(client):
    status, answer = await _post(client, "/v2/embed", {"texts": ["x"], "model": "nope", "input_type": "search_query"})
    assert status == 404 and set(answer) == {"message"} and "nope" in answer["message"]
    resp = await client.post("/v2/embed", data=b"{not json", headers=ALL)
    assert resp.status == 400 and set(await resp.json()) == {"message"}
    resp = await client.post("/v2/rerank", json={"model": "echo-rerank", "query": "q", "documents": ["a"]})
    assert resp.status == 401 and set(await resp.json()) == {"message"}
    resp = await client.get("/v2/embed", headers=ALL)  # a 405 from aiohttp itself
    assert resp.status == 405 and set(await resp.json()) == {"message"} and resp.headers["Allow"] == "POST"


async def test_cohere_v1_embed_floats_and_by_type(client):
    texts = ["hello", "a longer text"]
    status, body = await _post(client, "/v1/embed", {"texts": texts, "model": "echo-emb",
                                                     "input_type": "classification"})
    assert status == 200 and body["response_type"] == "embeddings_floats" and body["texts"] == texts
    np.testing.assert_array_equal(np.array(body["embeddings"]), np.stack([_echo(t) for t in texts]))
    assert body["meta"]["billed_units"]["input_tokens"] > 0 and body["id"]
    status, body = await _post(client, "/v1/embed", {"texts": texts, "model": "echo-emb",
                                                     "embedding_types": ["float", "int8", "ubinary"]})
    assert status == 200 and body["response_type"] == "embeddings_by_type"
    assert set(body["embeddings"]) == {"float", "int8", "ubinary"}


async def test_quantised_outputs_are_computed_from_the_float_vector(client):
    texts = ["a", "abc", "abcdefgh"]
    types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    status, body = await _post(client, "/v2/embed", {"texts": texts, "model": "echo-emb",
                                                     "input_type": "search_document", "embedding_types": types})
    assert status == 200, body
    floats = np.array(body["embeddings"]["float"], dtype=np.float32)
    np.testing.assert_array_equal(floats, np.stack([_echo("passage: " + t) for t in texts]))
    for kind in ("int8", "uint8", "binary", "ubinary"):
        np.testing.assert_array_equal(np.array(body["embeddings"][kind]), quantize(floats, kind))
    # int8: the largest magnitude maps to 127; binary: one sign bit a dimension, 16 dims -> 2 bytes
    assert all(max(abs(x) for x in row) == 127 for row in body["embeddings"]["int8"])
    assert all(len(row) == 2 for row in body["embeddings"]["ubinary"])
    bits = np.unpackbits(np.array(body["embeddings"]["ubinary"], dtype=np.uint8), axis=1)
    np.testing.assert_array_equal(bits, (floats > 0).astype(np.uint8))
    decoded = np.stack([np.frombuffer(base64.b64decode(s), "<f4") for s in body["embeddings"]["base64"]])
    np.testing.assert_array_equal(decoded, floats)


async def test_input_type_selects_the_routes_prompt_in_every_dialect(client):
    want_query, want_doc = _echo("query: x"), _echo("passage: x")
    calls = [("/v1/embeddings", {"model": "echo-emb", "input": "x", "input_type": "query"}, want_query),
             ("/v1/embeddings", {"model": "echo-emb", "input": "x", "task": "retrieval.passage"}, want_doc),
             ("/v2/embed", {"model": "echo-emb", "texts": ["x"], "input_type": "search_query"}, want_query),
             ("/embed", {"inputs": "x", "prompt_name": "document"}, want_doc)]
    for path, body, want in calls:
        status, answer = await _post(client, path, body)
        assert status == 200, (path, answer)
        got = answer[0] if path == "/embed" else (answer["embeddings"]["float"][0] if path == "/v2/embed"
                                                  else answer["data"][0]["embedding"])
        if path == "/embed":  # TEI answers unit vectors
            want = want / np.linalg.norm(want)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # a route without prompts refuses an input type rather than ignore it
    status, answer = await _post(client, "/v1/embeddings", {"model": "echo-plain", "input": "x", "input_type": "query"})
    assert status == 400 and answer["error"]["code"] == "unsupported_input_type"


async def test_voyage_fields_give_correct_data_or_a_400(client):
    status, body = await _post(client, "/v1/embeddings", {"model": "echo-emb", "input": ["ab"], "output_dimension": 4})
    assert status == 200 and len(body["data"][0]["embedding"]) == 4
    status, body = await _post(client, "/v1/embeddings", {"model": "echo-emb", "input": ["ab", "abcd"],
                                                          "output_dtype": "int8", "encoding_format": "base64",
                                                          "input_type": None, "truncation": True})
    assert status == 200
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), np.int8) for d in body["data"]]
    assert [len(r) for r in rows] == [16, 16]  # 16 int8 values, not 64 bytes read as floats
    np.testing.assert_array_equal(np.stack(rows), quantize(np.stack([_echo("ab"), _echo("abcd")]), "int8"))
    status, body = await _post(client, "/v1/embeddings", {"model": "echo-emb", "input": "x", "dimensions": 4,
                                                          "output_dimension": 4})
    assert status == 400 and "not both" in body["error"]["message"]


async def test_truncation_controls_refuse_rather_than_cut(client):
    long = " ".join(["word"] * 30)  # over echo-emb's max_input_tokens of 12
    for path, body in [("/v1/embeddings", {"model": "echo-emb", "input": long, "truncation": False}),
                       ("/v2/embed", {"model": "echo-emb", "texts": [long], "truncate": "NONE"}),
                       ("/embed", {"inputs": long})]:  # TEI's default: truncate false
        status, answer = await _post(client, path, body)
        assert status == 400, (path, answer)
        assert "truncation is not allowed" in (answer.get("message") or answer["error"]["message"])
    status, _ = await _post(client, "/embed", {"inputs": long, "truncate": True})
    assert status == 200
    status, answer = await _post(client, "/v1/embeddings", {"model": "echo-plain", "input": "x", "truncation": False})
    assert status == 400 and answer["error"]["code"] == "unknown_input_limit"
    status, answer = await _post(client, "/v2/embed", {"model": "echo-emb", "texts": ["x"], "truncate": "START"})
    assert status == 400 and "START" in answer["message"]


async def test_tei_rerank_and_tokenize_and_the_shared_rerank_path(client):
    status, body = await _post(client, "/rerank", {"query": "q", "texts": ["a", "abc", "ab"], "return_text": True})
    assert status == 200 and body == [{"index": 1, "score": 3.0, "text": "abc"},
                                      {"index": 2, "score": 2.0, "text": "ab"},
                                      {"index": 0, "score": 1.0, "text": "a"}]
    status, body = await _post(client, "/rerank", {"model": "echo-rerank", "query": "q", "documents": ["a", "abc"],
                                                   "return_documents": True})
    assert status == 200 and body["results"][0] == {"index": 1, "relevance_score": 3.0, "document": {"text": "abc"}}
    assert body["data"][0] == {"index": 1, "relevance_score": 3.0, "document": "abc"}  # Voyage reads data
    status, body = await _post(client, "/tokenize", {"inputs": ["hello world"]})
    assert status == 200
    tokens = body[0]
    assert [t["text"] for t in tokens] == ["[CLS]", "hello", "world", "[SEP]"]
    assert [t["special"] for t in tokens] == [True, False, False, True] and tokens[1]["start"] == 0
    status, body = await _post(client, "/tokenize", {"inputs": "hello", "add_special_tokens": False})
    assert [t["text"] for t in body[0]] == ["hello"]


async def test_a_request_naming_no_model_without_defaults_is_a_clear_400(aiohttp_client, tmp_path):
    routing = {k: v for k, v in ROUTING.items() if k != "defaults"}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    resp = await client.post("/embed", json={"inputs": "x"})
    assert resp.status == 400 and "no default embeddings model" in (await resp.json())["error"]["message"]


async def test_models_are_scoped_by_key(client):
    assert (await client.get("/v1/models")).status == 401
    assert (await client.get("/v1/models", headers={"Authorization": "Bearer wrong"})).status == 401
    narrow = {"Authorization": "Bearer k-rerank"}
    listed = await (await client.get("/v1/models", headers=narrow)).json()
    assert [m["id"] for m in listed["data"]] == ["echo-rerank"]
    assert (await client.get("/v1/models/echo-emb", headers=narrow)).status == 404
    one = await (await client.get("/v1/models/echo-emb", headers=ALL)).json()
    assert one["id"] == "echo-emb" and one["type"] == "embeddings" and one["max_input_tokens"] == 12
    assert one["input_types"] == ["classification", "clustering", "document", "query"]


async def test_cors_is_off_by_default_and_405_says_allow(client):
    resp = await client.options("/v1/embeddings", headers={"Origin": "https://app.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_for_configured_origins(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path, routing=ROUTING, auth=KEYS, cors_origins=("https://app.example",))
    client = await serve(aiohttp_client, settings)
    pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}
    resp = await client.options("/v1/embeddings", headers=pre)
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "X-Expect-Embedding-Space" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"},
                             headers={**ALL, "Origin": "https://app.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    assert "X-Embedding-Space" in resp.headers["Access-Control-Expose-Headers"] and "X-Embedding-Space" in resp.headers
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"},
                             headers={"Origin": "https://app.example"})  # errors carry CORS headers too
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp = await client.options("/v1/embeddings", headers={**pre, "Origin": "https://evil.example"})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


async def test_retry_hints_are_spread_out(aiohttp_client, tmp_path):
    limits = {"default": {"capacity": 1, "refill_rate": 0.01}}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING, limits=limits))
    await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"})
    hints = []
    for _ in range(12):
        resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"})
        assert resp.status == 429
        wait = int(resp.headers["Retry-After"])
        ms = int(resp.headers["retry-after-ms"])
        assert (wait - 1) * 1000 < ms <= wait * 1500
        hints.append(ms)
    assert len(set(hints)) > 6  # waiting clients are told different moments


async def test_prompt_presets_and_the_default_input_type(aiohttp_client, tmp_path):
    routing = {"embeddings": [
        {"model": "e5", "upstream": {"type": "echo", "dim": 4}, "prompts": "e5"},
        {"model": "e5-docs", "upstream": {"type": "echo", "dim": 4},
         "prompts": {"preset": "e5", "default": "document", "clustering": "cluster: "}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))

    async def width(model, **extra):
        status, body = await _post(client, "/v1/embeddings", {"model": model, "input": "x", **extra}, headers={})
        assert status == 200, body
        return body["data"][0]["embedding"][0]  # the echo adapter's first value: the text's length

    assert await width("e5") == len("x")  # no input type, no default: the text as it is
    assert await width("e5", input_type="query") == len("query: x")
    assert await width("e5-docs") == len("passage: x")  # the route's default input type
    assert await width("e5-docs", task="separation") == len("cluster: x")  # a preset entry overridden


def test_an_unknown_preset_is_a_config_error_naming_the_line(tmp_path):
    from core.errors import ConfigError
    from core.gateway import Gateway
    from tests.support.inprocess import echo_plugin_manager

    settings = write_configs(tmp_path, routing={"embeddings": [
        {"model": "m", "upstream": {"type": "echo"}, "prompts": "e6"}]})
    with pytest.raises(ConfigError, match="unknown prompt preset 'e6'") as err:
        Gateway(settings, echo_plugin_manager()).validate()
    assert "prompts: e6" in (tmp_path / "routing.yaml").read_text().splitlines()[err.value.line - 1]
