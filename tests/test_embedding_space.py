"""Every embeddings answer names the space its vectors are in (``X-Embedding-Space``), computed
from config alone; ``/v1/models/{id}`` lists it per input type; a request that pins a space the
route no longer serves (``X-Expect-Embedding-Space``) is a 409 in its own dialect, before the
model is called.

What changes the space and what shapes the cache key are two flags on one declaration
(``Option.changes_space``, ``Option.shapes_output``); the tests below hold each to its meaning.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
import sys
from dataclasses import replace

import httpx
import pytest

from core.app import create_app
from core.config import ModelRoute, UpstreamConfig
from core.gateway import Gateway
from core.http import GATEWAY
from core.space import RouteSpace, fingerprint
from plugins.cache.keys import route_digest
from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.support.options import each_option_changed
from tests.support.processes import ROOT, base_env, start_router
from tests.test_cache import SENT, UpstreamPlugin

SPACE = re.compile(r"^es1-[0-9a-f]{16}$")
BASE = ModelRoute(alias="m", kind="embeddings", served_name="m-v1", enabled=True,
                  upstream=UpstreamConfig(type="infinity", urls=("http://a:7997",)),
                  prompts={"query": "query: ", "document": "passage: ", "default": "document"}, dimensions=8)


def _space(route: ModelRoute, gateway: Gateway, input_type: str | None = "query", dims: int | None = None,
           output: str = "float") -> str:
    cls = gateway.registry.factories["infinity"]  # the base route's type: its schemas
    space = RouteSpace.of(route, cls.upstream_options, cls.route_options | gateway.route_options)
    return fingerprint(space, input_type, {}, dims or route.dimensions, output)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    return Gateway(write_configs(tmp_path_factory.mktemp("space"), routing={"embeddings": []}))


# Changes of the route that move the space, and changes that must not (alone or together).
MOVES = {
    "served model": lambda r: replace(r, served_name="m-v2"),
    "upstream type": lambda r: replace(r, upstream=replace(r.upstream, type="http")),
    "revision": lambda r: replace(r, options={"revision": "2026-12"}),
    "prompt": lambda r: replace(r, prompts={**r.prompts, "query": "search_query: "}),
    "dimensions": lambda r: replace(r, dimensions=16),
}
KEEPS = {
    "truncation": lambda r: replace(r, truncation="end"),
    "token ids": lambda r: replace(r, token_ids="model"),  # noqa: S106 - a vocabulary's name
    "timeout": lambda r: replace(r, upstream=replace(r.upstream, timeout_s=99.0)),
    "retries": lambda r: replace(r, upstream=replace(r.upstream, options={"retries": 7, "pool_size": 3})),
    "urls": lambda r: replace(r, upstream=replace(r.upstream, urls=("http://b:7997", "http://c:7997"))),
    "input limit": lambda r: replace(r, max_input_tokens=128),
    "queue": lambda r: replace(r, options={"queue_max_items": 5, "max_batch_tokens": 4096}),
    "cache": lambda r: replace(r, options={"cache": "shared"}),
    "another input type's prompt": lambda r: replace(r, prompts={**r.prompts, "document": "doc: "}),
    "listing": lambda r: replace(r, owned_by="team", enabled=False, allow_dimensions=False, tokenizer="t"),
    "wire encoding": lambda r: replace(r, upstream=replace(r.upstream, options={"encoding_format": "float"})),
}


def test_the_space_moves_with_model_revision_prompt_and_dimensions_and_nothing_else(gateway):
    """Every subset of the changes that keep the space keeps it; each change that moves it moves
    it whatever else changed beside it."""
    before = _space(BASE, gateway)
    checked = 0
    for n in range(len(KEEPS) + 1):
        for names in itertools.combinations(KEEPS, n) if n <= 2 or n == len(KEEPS) else ():
            route = BASE
            for name in names:
                route = KEEPS[name](route)
            assert _space(route, gateway) == before, names
            for move_name, move in MOVES.items():
                assert _space(move(route), gateway) != before, (move_name, names)
            checked += 1
    assert checked > 60


def test_the_space_moves_exactly_with_the_options_declared_to_change_it(gateway):
    """Every option a route or an upstream may hold, for every built-in adapter type: a new value
    gives a new space if and only if the option is declared ``changes_space``."""
    checked = 0
    for c in each_option_changed(gateway):
        before = fingerprint(RouteSpace.of(c.base, c.upstream_schema, c.route_schema), None, {}, 8)
        space = fingerprint(RouteSpace.of(c.route, c.upstream_schema, c.route_schema), None, {}, 8)
        assert (space != before) is c.option.changes_space, (c.type_name, c.where, c.option.name)
        checked += 1
    assert checked > 20


def test_the_cache_key_and_the_space_are_two_different_things(gateway):
    """Truncation shapes the cache key, not the space; the token-id mode neither (it changes the
    final input: decoded text or the model's ids, keyed apart); dimensions and output types change
    the space, applied after the cache."""
    cls = gateway.registry.factories["infinity"]
    schemas = (cls.upstream_options, cls.route_options | gateway.route_options)
    for name in ("truncation", "token ids"):
        changed = KEEPS[name](BASE)
        assert (route_digest(changed, *schemas) != route_digest(BASE, *schemas)) is (name == "truncation")
        assert _space(changed, gateway) == _space(BASE, gateway)
    spaces = {o: _space(BASE, gateway, output=o) for o in ("float", "base64", "int8", "uint8", "binary", "ubinary")}
    assert spaces["float"] == spaces["base64"]
    assert len(set(spaces.values())) == 5
    assert _space(BASE, gateway, dims=4) != _space(BASE, gateway)
    assert _space(BASE, gateway, "query") != _space(BASE, gateway, "document")


def test_the_space_is_the_same_in_another_process(gateway):
    """Computed from config, never from process state (a replica starts with another hash seed)."""
    code = ("from core.config import ModelRoute, UpstreamConfig; from core.space import RouteSpace, fingerprint; "
            "r = ModelRoute(alias='m', kind='embeddings', served_name='m-v1', enabled=True, "
            "upstream=UpstreamConfig(type='echo', options={'dim': 4, 'z': [1, {'b': 2, 'a': 1}]}), "
            "options={'revision': 'r1'}, prompts={'query': 'q: '}); "
            "print(fingerprint(RouteSpace.of(r), 'query', {'normalized': True}, 4, 'int8'))")
    route = ModelRoute(alias="m", kind="embeddings", served_name="m-v1", enabled=True,
                       upstream=UpstreamConfig(type="echo", options={"dim": 4, "z": [1, {"a": 1, "b": 2}]}),
                       options={"revision": "r1"}, prompts={"query": "q: "})
    here = fingerprint(RouteSpace.of(route), "query", {"normalized": True}, 4, "int8")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], env=base_env(PYTHONHASHSEED=seed), cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=True).stdout.strip()
        assert out == here and SPACE.match(here)


def _routing(**route) -> dict:
    entry = {"model": "m", "served_name": "m-v1", "upstream": {"type": "counting"},
             "prompts": {"preset": "e5", "default": "document"}, "dimensions": 8, **route}
    return {"embeddings": [{k: v for k, v in entry.items() if v is not None}]}


async def _client(aiohttp_client, folder, routing=None):
    SENT.clear()
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    app = create_app(write_configs(folder, routing=routing or _routing()), pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client


async def _header(client, path: str, body: dict) -> str:
    resp = await client.post(path, json=body)
    assert resp.status == 200, await resp.text()
    return resp.headers["X-Embedding-Space"]


async def test_every_embeddings_dialect_names_its_space_and_the_model_lists_it(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    texts = ["alpha", "beta"]
    openai = await _header(client, "/v1/embeddings", {"model": "m", "input": texts})
    assert SPACE.match(openai)
    assert await _header(client, "/v1/embeddings", {"model": "m", "input": texts, "encoding_format": "base64"}) \
        == await _header(client, "/embeddings", {"model": "m", "input": texts}) == openai
    voyage_query = await _header(client, "/v1/embeddings", {"model": "m", "input": texts, "input_type": "query"})
    query_int8 = await _header(client, "/v1/embeddings", {"model": "m", "input": texts, "input_type": "query",
                                                          "output_dtype": "int8"})
    jina = await _header(client, "/v1/embeddings", {"model": "m", "input": texts, "task": "retrieval.query",
                                                     "normalized": True})
    cohere_v1 = await _header(client, "/v1/embed", {"model": "m", "texts": texts, "input_type": "search_query"})
    cohere_v2 = await _header(client, "/v2/embed", {"model": "m", "texts": texts, "input_type": "search_query",
                                                     "embedding_types": ["base64", "int8", "float"]})
    narrow = await _header(client, "/v2/embed", {"model": "m", "texts": texts, "input_type": "search_query",
                                                  "output_dimension": 4})
    tei = await _header(client, "/embed", {"model": "m", "inputs": texts, "prompt_name": "query", "truncate": True})
    assert cohere_v1 == voyage_query != openai  # the query prompt: another space than documents'
    assert cohere_v2 == f"{voyage_query}, {query_int8}" and query_int8 != voyage_query  # one per output type
    assert tei == jina != voyage_query  # both renormalised in the gateway
    assert narrow not in (voyage_query, openai)
    model = await (await client.get("/v1/models/m")).json()
    assert model["embedding_space"] == openai  # no input type: the route's default, document
    assert model["embedding_spaces"]["query"] == voyage_query
    assert model["embedding_spaces"]["document"] == openai
    assert set(model["embedding_spaces"]) == {"query", "document", "classification", "clustering"}


async def test_a_pinned_space_the_route_does_not_serve_is_a_409_before_the_model_is_called(aiohttp_client,
                                                                                            tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    serving = await _header(client, "/v1/embeddings", {"model": "m", "input": ["x"]})
    SENT.clear()
    stale = "es1-0123456789abcdef"
    for path, body in (("/v1/embeddings", {"model": "m", "input": ["x"]}),
                       ("/v2/embed", {"model": "m", "texts": ["x"], "embedding_types": ["float"]}),
                       ("/embed", {"model": "m", "inputs": ["x"], "truncate": True})):
        resp = await client.post(path, json=body, headers={"X-Expect-Embedding-Space": stale})
        assert resp.status == 409 and resp.headers["x-should-retry"] == "false"
        error = await resp.json()
        message = error["message"] if path == "/v2/embed" else error["error"]["message"]
        assert stale in message and resp.headers["X-Embedding-Space"] in message
        if path == "/v1/embeddings":
            assert error["error"]["code"] == "embedding_space_mismatch" and serving in message
    assert SENT == []  # no vector was computed for any of them
    resp = await client.post("/v1/embeddings", json={"model": "m", "input": ["x"]},
                             headers={"X-Expect-Embedding-Space": serving})
    assert resp.status == 200


async def test_a_route_of_unknown_width_checks_the_pin_on_its_first_answer(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, routing=_routing(dimensions=None))
    assert (await (await client.get("/v1/models/m")).json())["embedding_space"] is None
    resp = await client.post("/v1/embeddings", json={"model": "m", "input": ["x"]},
                             headers={"X-Expect-Embedding-Space": "es1-0123456789abcdef"})
    assert resp.status == 409 and list(await resp.json()) == ["error"]  # computed, never sent
    model = await (await client.get("/v1/models/m")).json()
    assert SPACE.match(model["embedding_space"])  # pinned from that answer


def test_a_hot_reload_that_changes_the_space_gives_the_pinned_client_a_409(tmp_path):
    """Two replicas of one config answer the same space; an edit of routing.yaml (a new revision)
    reaches both through their reload, and a client pinned to the old space is refused."""
    configs = tmp_path / "configs"
    configs.mkdir()
    route = {"model": "e", "served_name": "echo-v1", "upstream": {"type": "echo"}, "dimensions": 4,
             "options": {"revision": "1"}}
    write_yaml(configs / "routing.yaml", {"embeddings": [route]})
    write_yaml(configs / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 100000, "refill_rate": 100000}})
    site = echo.install_plugin(tmp_path / "site")
    env = {"PYTHONPATH": f"{site}:{ROOT}", "ROUTER_ROUTING_RELOAD_INTERVAL_SECONDS": "0.5"}
    replicas = [start_router(configs, tmp_path / f"router{i}.log", **env) for i in range(2)]
    try:
        body = {"model": "e", "input": "x"}
        before = {httpx.post(url + "/v1/embeddings", json=body).headers["X-Embedding-Space"] for _, url in replicas}
        assert len(before) == 1
        [old] = before
        write_yaml(configs / "routing.yaml", {"embeddings": [{**route, "options": {"revision": "2"}}]})
        for _, url in replicas:
            for _ in range(300):
                resp = httpx.post(url + "/v1/embeddings", json=body, headers={"X-Expect-Embedding-Space": old})
                if resp.status_code != 200:
                    break
                asyncio.run(asyncio.sleep(0.1))
            assert resp.status_code == 409, resp.text
            new = resp.headers["X-Embedding-Space"]
            assert new != old and old in resp.json()["error"]["message"] and new in resp.json()["error"]["message"]
            assert resp.headers["x-should-retry"] == "false"
            assert httpx.get(url + "/v1/models/e").json()["embedding_space"] == new
    finally:
        for server, _ in replicas:
            server.stop()


def test_a_pin_may_be_one_value_or_a_whole_header_copied_back():
    from core.errors import SpaceMismatch
    from core.space import check_expected

    spaces = ("es1-aaaaaaaaaaaaaaaa", "es1-bbbbbbbbbbbbbbbb")
    for pin in (None, "es1-bbbbbbbbbbbbbbbb", " es1-aaaaaaaaaaaaaaaa ", "es1-aaaaaaaaaaaaaaaa, es1-bbbbbbbbbbbbbbbb"):
        check_expected(pin, spaces, "m")
    for pin in ("es1-cccccccccccccccc", "es1-aaaaaaaaaaaaaaaa, es1-cccccccccccccccc", ""):
        with pytest.raises(SpaceMismatch) as caught:
            check_expected(pin, spaces, "m")
        assert caught.value.status == 409 and caught.value.headers["x-should-retry"] == "false"


def test_a_remembered_space_is_the_one_worked_out_anew_and_the_memo_stays_small(gateway):
    from core.space import MEMO_SIZE, fingerprints

    space = RouteSpace.of(BASE)
    asks = [("query", {}, 8, ("float",)), ("document", {}, 8, ("int8", "float", "base64")),
            ("query", {"normalized": True}, 8, ("float",)), ("query", {"normalized": 1}, 8, ("float",)),
            ("query", {"extra": [1, 2]}, 8, ("float",)), (None, {}, 4, ("binary",))]
    for _ in range(2):  # the second round reads the memo
        for input_type, fields, dims, outputs in asks:
            fresh = tuple(dict.fromkeys(fingerprint(space, input_type, fields, dims, o) for o in outputs))
            assert fingerprints(space, input_type, fields, dims, outputs) == fresh
    # True and 1 are one dict key but two spaces; a list value cannot key the memo and is never kept
    assert fingerprints(space, "query", {"normalized": True}, 8, ("float",)) != \
        fingerprints(space, "query", {"normalized": 1}, 8, ("float",))
    assert len(space.memo) == 5
    for width in range(1, 3 * MEMO_SIZE):
        assert fingerprints(space, "query", {}, width, ("float",)) == (fingerprint(space, "query", {}, width),)
    assert len(space.memo) == MEMO_SIZE
    assert space == RouteSpace.of(BASE)  # the memo is no part of what the space is
