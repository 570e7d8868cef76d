"""The per-item embedding cache (flag ``embedding_cache``): a fake upstream counts what it is sent.

Only misses are sent, each distinct one once; answers equal the uncached ones bit for bit, with
``dimensions`` applied after the cache; a change that changes a vector misses, one that does not
(auth.yaml) keeps the entries; two routers share entries through a real redis-server; a Redis that
is down costs the cache, never the request.
"""

from __future__ import annotations

import asyncio
import base64
import re

import numpy as np
import pytest

from core import hookimpl
from core.adapters import Adapter, EmbedResult
from core.app import create_app
from core.http import GATEWAY
from core.options import Option, OptionSchema
from plugins.cache import MemoryStore
from tests.support.configs import write_yaml
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.support.options import each_option_changed
from tests.support.processes import free_port
from tests.support.redis_server import redis_binary, start_redis

SENT: list[list[str]] = []  # what the upstream received, call by call


class CountingUpstream(Adapter):
    """Vectors that depend on the text only (so a wrong row is seen), and a log of every call.
    Its route option ``prefix`` goes before each text inside the adapter, as qwen3's instruction
    does; the text "broken" gets a NaN."""

    reports_usage = True
    route_options = OptionSchema([Option("prefix", str, "", "put before every input by the adapter")])

    async def embed(self, route, inputs, call):
        SENT.append(list(inputs))
        texts = [route.options.get("prefix", "") + t for t in inputs]
        rows = [np.random.default_rng(sum(map(ord, t)) * 7919 + len(t)).standard_normal(8) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        vectors[[i for i, t in enumerate(inputs) if t == "broken"], 0] = np.nan
        return EmbedResult(vectors, prompt_tokens=3 * len(inputs))


class UpstreamPlugin:
    @hookimpl
    def register_adapters(self, register):
        register("counting", CountingUpstream)


def _routing(flags=("embedding_cache",), **route) -> dict:
    entry = {"model": "m", "served_name": "m-v1", "upstream": {"type": "counting"}, "prompts": "none", **route}
    uncached = {**entry, "model": "nocache", "options": {"cache": False}}
    return {"feature_flags": list(flags), "embeddings": [entry, uncached]}


async def _client(aiohttp_client, folder, routing=None, **settings):
    SENT.clear()
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    app = create_app(write_configs(folder, routing=routing or _routing(), **settings), pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client


async def _embed(client, inputs, model="m", **extra):
    resp = await client.post("/v1/embeddings", json={"model": model, "input": inputs, "encoding_format": "base64",
                                                      **extra})
    body = await resp.json()
    assert resp.status == 200, body
    return resp, body


def _rows(body) -> list[bytes]:
    return [base64.b64decode(d["embedding"]) for d in body["data"]]


async def test_flag_embedding_cache_sends_only_misses_each_once_and_answers_in_order(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    resp, first = await _embed(client, ["alpha", "beta"])
    assert resp.headers["X-Cache-Hits"] == "0" and SENT == [["alpha", "beta"]]
    resp, again = await _embed(client, ["beta", "alpha"])
    assert resp.headers["X-Cache-Hits"] == "2" and len(SENT) == 1  # nothing sent
    assert _rows(again) == _rows(first)[::-1]
    resp, mixed = await _embed(client, ["gamma", "alpha", "delta", "gamma"])
    assert SENT[-1] == ["gamma", "delta"]  # one call, the misses only, a repeated one once
    assert resp.headers["X-Cache-Hits"] == "1"
    rows = _rows(mixed)
    assert rows[1] == _rows(first)[0] and rows[0] == rows[3]


async def test_cached_answers_equal_uncached_ones_bit_for_bit_dimensions_included(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    texts = [f"document number {i}" for i in range(6)]
    for extra in ({}, {"dimensions": 4}):
        _, uncached = await _embed(client, texts, model="nocache", **extra)
        _, cold = await _embed(client, texts, **extra)
        _, warm = await _embed(client, texts, **extra)
        assert _rows(cold) == _rows(uncached) == _rows(warm)
        assert cold["usage"] == warm["usage"] == uncached["usage"]  # usage counts the whole request
    assert len(SENT) == 2 + 1  # nocache twice; the cached route once: dimensions share its entries


async def test_a_route_that_opts_out_always_goes_upstream_and_says_nothing(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    for _ in range(2):
        resp, _ = await _embed(client, ["same"], model="nocache")
        assert "X-Cache-Hits" not in resp.headers
    assert SENT == [["same"], ["same"]]


async def test_flag_embedding_cache_off_means_no_cache(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, routing=_routing(flags=()))
    for _ in range(2):
        resp, _ = await _embed(client, ["same"])
        assert "X-Cache-Hits" not in resp.headers
    assert len(SENT) == 2


@pytest.mark.parametrize("change", [{"served_name": "m-v2"}, {"prompts": {"query": "query: ", "document": ""}},
                                    {"options": {"revision": "2"}}])
async def test_a_change_that_changes_vectors_misses(aiohttp_client, tmp_path, change):
    client = await _client(aiohttp_client, tmp_path)
    await _embed(client, ["kept text"])
    # auth.yaml rewritten (a config change, with a new digest), not a vector change
    write_yaml(tmp_path / "auth.yaml", {"allow_anonymous_without_api_keys": True, "api_keys": []})
    await client.app[GATEWAY].load()
    resp, _ = await _embed(client, ["kept text"])
    assert resp.headers["X-Cache-Hits"] == "1"
    write_yaml(tmp_path / "routing.yaml", _routing(**change))
    await client.app[GATEWAY].load()
    resp, _ = await _embed(client, ["kept text"])
    assert resp.headers["X-Cache-Hits"] == "0" and len(SENT) == 2


async def test_metrics_count_hits_misses_and_tokens_served(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    await _embed(client, ["one", "two"])
    await _embed(client, ["one", "three"])
    text = await (await client.get("/metrics")).text()
    assert re.search(r'maas_cache_hits_total\{model="m"\} 1\.0', text)
    assert re.search(r'maas_cache_misses_total\{model="m"\} 3\.0', text)
    assert re.search(r'maas_cache_tokens_total\{model="m"\} [1-9]', text)
    assert re.search(r"maas_cache_bytes [1-9]", text)


async def test_the_memory_store_stays_within_its_bytes_and_evicts_the_least_recent():
    store = MemoryStore(max_bytes=3 * 32)
    await store.put_many([(b"a", bytes(32)), (b"b", bytes(32)), (b"c", bytes(32))])
    await store.get_many([b"a"])  # a is now the most recent
    await store.put_many([(b"d", bytes(32))])
    assert await store.get_many([b"a", b"b", b"c", b"d"]) == [bytes(32), None, bytes(32), bytes(32)]
    assert store.nbytes == 96


async def test_a_cache_redis_that_is_down_costs_the_cache_not_the_request(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path,
                           environ={"ROUTER_CACHE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    for _ in range(2):
        resp, _ = await _embed(client, ["still served"])
        assert resp.headers["X-Cache-Hits"] == "0"
    assert len(SENT) == 2
    text = await (await client.get("/metrics")).text()
    assert re.search(r"maas_cache_store_errors_total [1-9]", text)


@pytest.mark.redis
async def test_two_routers_share_entries_through_redis(aiohttp_client, tmp_path):
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    server, url = start_redis(tmp_path / "redis", binary)
    try:
        one = await _client(aiohttp_client, tmp_path / "one", environ={"ROUTER_CACHE_REDIS_URL": url})
        _, first = await _embed(one, ["shared", "entries"])
        two = await _client(aiohttp_client, tmp_path / "two", environ={"ROUTER_CACHE_REDIS_URL": url})  # SENT anew
        resp, second = await _embed(two, ["entries", "shared"])
        assert resp.headers["X-Cache-Hits"] == "2" and SENT == []
        assert _rows(second) == _rows(first)[::-1]
    finally:
        server.stop()


def test_the_cache_plugin_reads_its_own_environment_and_core_settings_do_not():
    from core.config import Settings
    from core.gateway import Gateway
    from plugins.cache import CacheSettings

    env = {"ROUTER_CACHE_REDIS_URL": "redis://cache:6379/1", "ROUTER_CACHE_MAX_MB": "64",
           "ROUTER_CACHE_TTL_SECONDS": "3600"}
    s = Gateway(Settings.from_env(env)).settings.of(CacheSettings)
    assert (s.redis_url, s.max_mb, s.ttl_s) == ("redis://cache:6379/1", 64.0, 3600.0)
    assert "cache:6379" not in repr(s)  # the URL may carry a password
    assert not any(name.startswith("cache") for name in Settings.__dataclass_fields__)


async def test_an_adapter_route_option_that_changes_vectors_is_part_of_the_key(aiohttp_client, tmp_path):
    entry = {"served_name": "shared-model", "upstream": {"type": "counting"}, "prompts": "none"}
    routing = {"feature_flags": ["embedding_cache"], "embeddings": [
        {**entry, "model": "queries", "options": {"prefix": "Instruct: find the passage\nQuery: "}},
        {**entry, "model": "documents"}]}
    client = await _client(aiohttp_client, tmp_path, routing=routing)
    _, query = await _embed(client, ["same words"], model="queries")
    resp, document = await _embed(client, ["same words"], model="documents")
    assert resp.headers["X-Cache-Hits"] == "0" and len(SENT) == 2
    assert _rows(query) != _rows(document)


async def test_a_bad_answer_is_refused_and_never_cached(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path)
    for _ in range(2):
        resp = await client.post("/v1/embeddings", json={"model": "m", "input": ["fine", "broken"]})
        assert resp.status == 502 and (await resp.json())["error"]["code"] == "upstream_not_finite"
    assert SENT == [["fine", "broken"], ["fine", "broken"]]  # asked again: nothing of it was stored


def test_the_key_changes_exactly_with_the_options_declared_to_shape_answers(tmp_path):
    """Every option a route or an upstream may hold: a new value gives a new key if and only if
    the option is declared ``shapes_output`` (a prompt or a revision does; retries or a queue bound
    do not), for every built-in adapter type and core's own route options."""
    from core.gateway import Gateway
    from plugins.cache.keys import route_digest

    gateway = Gateway(write_configs(tmp_path, routing={"embeddings": []}))
    checked = 0
    for c in each_option_changed(gateway):
        moved = route_digest(c.route, c.upstream_schema, c.route_schema) != route_digest(
            c.base, c.upstream_schema, c.route_schema)
        assert moved is c.option.shapes_output, (c.type_name, c.where, c.option.name)
        checked += 1
    assert checked > 20
    names = {o.name for o in gateway.route_options if not o.shapes_output}
    assert {"queue_max_items", "max_batch_tokens", "cache"} <= names
    assert "revision" not in names


@pytest.mark.parametrize("url", ["notaurl", "redis://:secretpw@cache:notaport/0", "http://cache:6379"])
@pytest.mark.parametrize("name", ["ROUTER_CACHE_REDIS_URL", "ROUTER_REDIS_URL"])
def test_a_bad_redis_url_is_a_config_error_that_never_echoes_it(name, url):
    from core.config import Settings
    from core.errors import ConfigError
    from core.gateway import Gateway

    with pytest.raises(ConfigError, match=name) as info:
        Gateway(Settings.from_env({name: url}))  # core's variable at from_env, the cache's at the start
    assert "secretpw" not in str(info.value) and url not in str(info.value)


async def test_a_stored_vector_of_another_width_is_never_served(aiohttp_client, tmp_path):
    """A shared store may hold entries another replica or an older model wrote: what the cache
    answers is checked against the route's width like what the model answers."""
    from core.served import ModelCall
    from plugins.cache.keys import item_keys

    client = await _client(aiohttp_client, tmp_path, routing=_routing(dimensions=8))
    layer = client.app[GATEWAY].snapshot.models["m"].layer
    [key] = item_keys(layer.digest_for(ModelCall()), ["stale"], False)  # an anonymous caller's entry
    await layer.cache.store.put_many([(key, np.ones(4, dtype=np.float32).tobytes())])
    resp = await client.post("/v1/embeddings", json={"model": "m", "input": ["stale"]})
    assert resp.status == 502 and (await resp.json())["error"]["code"] == "upstream_wrong_width"
    assert SENT == []  # it was a hit: only the check stood between it and the client
