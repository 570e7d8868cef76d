"""The embedding cache keeps each API key's entries apart: a key's hits come only from its own
earlier inputs, so no key learns what another embedded, neither from ``X-Cache-Hits`` nor from
the time an answer takes (its request for another key's text goes to the model like any new
text). A route declared ``cache: shared`` has one scope for every caller and reveals membership
across keys, as documented. The memory store's bound is shared fairly between scopes.
"""

from __future__ import annotations

import asyncio

import pytest

from core.app import create_app
from core.errors import ConfigError
from core.gateway import Gateway
from core.http import GATEWAY
from plugins.cache import MemoryStore
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.test_cache import SENT, UpstreamPlugin

KEYS = {"alpha": "sk-test-alpha-0001", "beta": "sk-test-beta-0002"}
A_TEXTS = ["merger memo: acme buys initech", "layoffs list q3", "board minutes 2026-11"]
B_NEW = ["weather in oslo", "a recipe for bread", "bus timetable"]


def _routing(cache: object = True) -> dict:
    return {"feature_flags": ["embedding_cache"],
            "embeddings": [{"model": "m", "served_name": "m-v1", "upstream": {"type": "counting"}, "prompts": "none",
                            "options": {"cache": cache}}]}


async def _client(aiohttp_client, folder, cache: object = True):
    SENT.clear()
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    settings = write_configs(folder, routing=_routing(cache),
                             auth={"api_keys": [{"name": n, "key": k} for n, k in KEYS.items()]},
                             limits={"default": {"capacity": 100000, "refill_rate": 100000}})
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client


BODIES = {  # path -> the body of a request for ``texts`` in that dialect
    "/v1/embeddings": lambda texts: {"model": "m", "input": texts},
    "/v1/embed": lambda texts: {"model": "m", "texts": texts},
    "/v2/embed": lambda texts: {"model": "m", "texts": texts, "embedding_types": ["float"]},
    "/embed": lambda texts: {"model": "m", "inputs": texts, "truncate": True},
}


async def _embed(client, key: str, texts: list[str], path: str = "/v1/embeddings") -> int:
    """X-Cache-Hits of ``key``'s request for ``texts``."""
    resp = await client.post(path, json=BODIES[path](texts), headers={"Authorization": f"Bearer {KEYS[key]}"})
    assert resp.status == 200, await resp.text()
    return int(resp.headers["X-Cache-Hits"])


@pytest.mark.parametrize("path", list(BODIES))
async def test_a_key_cannot_tell_which_texts_another_key_embedded(aiohttp_client, tmp_path, path):
    """The oracle: B sends A's texts among new ones. Per key, the header says 0 for all of them and
    every one of them reaches the model (so each costs B a model call: no hit is faster)."""
    client = await _client(aiohttp_client, tmp_path)
    assert await _embed(client, "alpha", A_TEXTS, path) == 0
    assert await _embed(client, "alpha", A_TEXTS, path) == len(A_TEXTS)  # A's own entries serve A
    SENT.clear()
    probe = [A_TEXTS[0], B_NEW[0], A_TEXTS[1], B_NEW[1], A_TEXTS[2], B_NEW[2]]
    assert await _embed(client, "beta", probe, path) == 0
    assert SENT == [probe]  # A's texts went to the model like the new ones: no faster answer for them
    for text in probe:  # one by one, as a prober would: nothing tells A's texts from the others
        assert await _embed(client, "beta", [text], path) == 1  # B's own earlier request, not A's
    assert SENT == [probe]


async def test_a_shared_route_reveals_across_keys_as_documented(aiohttp_client, tmp_path):
    client = await _client(aiohttp_client, tmp_path, cache="shared")
    await _embed(client, "alpha", A_TEXTS)
    SENT.clear()
    assert await _embed(client, "beta", [A_TEXTS[0], B_NEW[0], A_TEXTS[1]]) == 2
    assert SENT == [[B_NEW[0]]]  # A's texts were answered from the shared scope


async def test_anonymous_callers_are_one_tenant(aiohttp_client, tmp_path):
    SENT.clear()
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    app = create_app(write_configs(tmp_path, routing=_routing()), pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    for hits in ("0", "2"):
        resp = await client.post("/v1/embeddings", json={"model": "m", "input": ["one", "two"]})
        assert resp.headers["X-Cache-Hits"] == hits
    assert len(SENT) == 1


@pytest.mark.parametrize("value", ["yes", "Shared", 1, ["shared"]])
def test_a_cache_option_that_is_not_true_false_or_shared_is_refused_at_load(tmp_path, value):
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    gateway = Gateway(write_configs(tmp_path, routing=_routing(value)), pm)
    with pytest.raises(ConfigError, match="'cache' must be true, false or shared") as caught:
        gateway.validate()
    assert caught.value.line is not None  # pointing at its line in routing.yaml


def test_the_option_accepts_its_three_values(tmp_path):
    pm = echo_plugin_manager()
    pm.register(UpstreamPlugin(), name="counting")
    for value in (True, False, "shared"):
        gateway = Gateway(write_configs(tmp_path, routing=_routing(value)), pm)
        assert gateway.validate().routing.routes["m"].options["cache"] == value


async def test_one_scope_filling_the_memory_store_does_not_evict_another_within_its_share():
    entry = bytes(64)
    store = MemoryStore(max_bytes=20 * 64)
    alpha = [b"alpha-%d" % i for i in range(6)]  # 6 entries: within a share of 10 (two scopes)
    await store.put_many([(k, entry) for k in alpha], owner="tenant:alpha")
    for batch in range(50):  # beta writes 8 times the whole store
        await store.put_many([(b"beta-%d-%d" % (batch, i), entry) for i in range(4)], owner="tenant:beta")
    assert await store.get_many(alpha) == [entry] * 6  # every one of alpha's entries kept
    assert store.nbytes <= store.max_bytes and store.held("tenant:beta") == 14 * 64  # beta keeps the rest
    assert (await store.get_many([b"beta-49-3"]))[0] == entry and (await store.get_many([b"beta-0-0"]))[0] is None


async def test_a_scope_over_its_share_gives_way_to_a_newcomer_least_recent_first():
    entry = bytes(64)
    store = MemoryStore(max_bytes=10 * 64)
    await store.put_many([(b"a%d" % i, entry) for i in range(10)], owner="a")  # alone: the whole store
    await store.get_many([b"a0"])  # a0 is now a's most recent
    await store.put_many([(b"b%d" % i, entry) for i in range(5)], owner="b")
    assert store.held("a") == store.held("b") == 5 * 64  # each its share of two
    assert await store.get_many([b"a0", b"a1", b"a9"]) == [entry, None, entry]  # a's least recent went
