"""/openapi.json names only the models the caller may call, as /v1/models lists them: a key's own
models, none without a key while keys exist, every model when callers are anonymous. The paths and
schemas are everyone's; only the model examples are scoped, and never one key's for another."""

from __future__ import annotations

import json

from tests.support.inprocess import serve, write_configs

ROUTING = {"embeddings": [{"model": "alpha-embed", "upstream": {"type": "echo", "dim": 4}},
                          {"model": "beta-embed", "upstream": {"type": "echo", "dim": 4}},
                          {"model": "hidden-embed", "enabled": False, "upstream": {"type": "echo", "dim": 4}}],
           "rerank": [{"model": "alpha-rerank", "upstream": {"type": "echo"}}]}
ALIASES = {"alpha-embed", "beta-embed", "hidden-embed", "alpha-rerank"}
ALPHA, BETA = "alpha-key-0123456789abcdef", "beta-key-0123456789abcdef"
KEYED = {"api_keys": [{"name": "alpha", "key": ALPHA, "models": ["alpha-embed", "alpha-rerank"]},
                      {"name": "beta", "key": BETA, "models": ["beta-embed"]}],
         "allow_anonymous_without_api_keys": False}


def _named(doc: dict) -> set[str]:
    """Every alias the document mentions anywhere (examples, enums, descriptions)."""
    text = json.dumps(doc)
    return {alias for alias in ALIASES if alias in text}


def _examples(doc: dict, path: str) -> list[str]:
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    model = schema.get("oneOf", [schema])[0]["properties"]["model"]
    return (model["anyOf"][0] if "anyOf" in model else model).get("examples", [])


async def _doc(client, **headers) -> tuple[dict, dict]:
    resp = await client.get("/openapi.json", headers=headers)
    assert resp.status == 200
    return await resp.json(), dict(resp.headers)


async def test_each_key_sees_only_its_own_models(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING, auth=KEYED))
    for _ in range(2):  # alternating: nothing of one key's document is kept for the other
        alpha, headers = await _doc(client, Authorization=f"Bearer {ALPHA}")
        beta, _ = await _doc(client, **{"X-API-Key": BETA})
        assert _named(alpha) == {"alpha-embed", "alpha-rerank"}
        assert _named(beta) == {"beta-embed"}
        assert _examples(alpha, "/v1/embeddings") == ["alpha-embed"]
        assert _examples(alpha, "/v1/rerank") == ["alpha-rerank"]
        assert _examples(beta, "/v1/embeddings") == ["beta-embed"] and _examples(beta, "/v1/rerank") == []
    assert "Authorization" in headers["Vary"] and "no-store" in headers["Cache-Control"]
    # the same models /v1/models lists for each key
    for key, doc in ((ALPHA, alpha), (BETA, beta)):
        listed = await (await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})).json()
        assert {m["id"] for m in listed["data"]} == _named(doc)


async def test_without_a_key_the_document_names_no_model(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING, auth=KEYED))
    anonymous, _ = await _doc(client)
    wrong, _ = await _doc(client, Authorization="Bearer not-a-key-at-all-0000")
    keyed, _ = await _doc(client, Authorization=f"Bearer {ALPHA}")
    assert _named(anonymous) == _named(wrong) == set()
    assert _examples(anonymous, "/v1/embeddings") == []
    # the paths and schemas are all there, for everyone
    assert anonymous["paths"].keys() == keyed["paths"].keys()
    assert anonymous["components"] == keyed["components"]


async def test_with_no_keys_every_callable_model_is_named(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING))  # anonymous allowed
    doc, _ = await _doc(client)
    assert _named(doc) == {"alpha-embed", "beta-embed", "alpha-rerank"}  # a disabled model is not callable
    assert _examples(doc, "/v1/embeddings") == ["alpha-embed", "beta-embed"]
