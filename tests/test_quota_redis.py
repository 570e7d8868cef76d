"""Quotas in a real Redis: the in-process and Redis stores decide alike, three routers share one
quota exactly, the count survives a Redis crash (append-only file, as production runs it), and
with Redis down a key fails closed (503) or, where its entry says so, open."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid

import aiohttp
import pytest

from plugins.rate_limit.quota.periods import current
from plugins.rate_limit.quota.redis_store import RedisQuotaStore
from plugins.rate_limit.quota.store import MemoryQuotaStore, Used
from tests.support.configs import write_yaml
from tests.support.echo import install_plugin
from tests.support.processes import ROOT, start_router
from tests.support.redis_server import redis_binary, start_redis

pytestmark = pytest.mark.redis

QUOTA, MONTH = 1000, 50_000  # tokens per day (the one that binds) and per month


@pytest.fixture(scope="module")
def binary():
    found = redis_binary()
    if found is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    return found


async def test_memory_and_redis_stores_decide_alike(binary, tmp_path):
    server, url = start_redis(tmp_path / "redis", binary)
    memory, shared = MemoryQuotaStore(), RedisQuotaStore(url, prefix=f"maas:test:{uuid.uuid4().hex}:")
    rng = random.Random(7)
    periods = current()
    try:
        for _ in range(300):
            limits = [(rng.choice([None, 40, 60]), rng.choice([None, 9])), (rng.choice([None, 80]), None)]
            tokens = rng.randint(0, 12)
            a = await memory.charge("k", periods, limits, tokens, 1)
            b = await shared.charge("k", periods, limits, tokens, 1)
            assert a == b
        refund = {("k", p): Used(-5, -1) for p in periods}
        await memory.add(refund)
        await shared.add(refund)
        assert await memory.read("k", periods) == await shared.read("k", periods)
        ttl = await shared._client.ttl(shared.key("k", periods[0]))
        assert periods[0].seconds_left(periods[0].start) < ttl <= periods[0].expires_at - time.time() + 1
    finally:
        await shared.close()
        server.stop()


@pytest.fixture(scope="module")
def stack(binary, tmp_path_factory):
    """Three routers on one Redis that keeps an append-only file."""
    work = tmp_path_factory.mktemp("quota-replicas")
    site = install_plugin(work / "site")
    cfg = work / "configs"
    cfg.mkdir()
    write_yaml(cfg / "routing.yaml", {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"},
                                                      "token_ids": "model", "max_input_tokens": 64}]})
    write_yaml(cfg / "auth.yaml", {"api_keys": [{"name": "shared", "key": "k-shared"},
                                                {"name": "lenient", "key": "k-lenient"}]})
    write_yaml(cfg / "rate_limits.yaml", {"per_api_key": {
        "shared": {"quota": {"tokens_per_day": QUOTA, "tokens_per_month": MONTH}},
        "lenient": {"quota": {"tokens_per_day": QUOTA, "fail_open": True}}}})
    redis_dir = work / "redis"
    server, url = start_redis(redis_dir, binary, aof=True)
    state = {"redis": server}
    routers = []
    try:
        for i in range(3):
            router, base = start_router(cfg, work / f"router-{i}.log", ROUTER_REDIS_URL=url,
                                        PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
            routers.append((router, base))
        yield [base for _, base in routers], url, redis_dir, state
    finally:
        for router, _ in routers:
            router.stop()
        state["redis"].stop()


def _body(tokens: int) -> dict:
    return {"model": "echo-emb", "input": [list(range(1, tokens + 1))]}


async def _post(session, base: str, key: str, tokens: int) -> int:
    async with session.post(base + "/v1/embeddings", json=_body(tokens),
                            headers={"Authorization": f"Bearer k-{key}"}) as resp:
        await resp.read()
        return resp.status


async def _usage(session, base: str, key: str) -> tuple[int, dict]:
    async with session.get(base + "/v1/usage", headers={"Authorization": f"Bearer k-{key}"}) as resp:
        return resp.status, await resp.json()


async def test_three_routers_share_one_quota_exactly_and_it_survives_a_redis_crash(stack, binary):
    bases, url, redis_dir, state = stack
    async with aiohttp.ClientSession() as session:
        # a burst of 7-token requests from all three at once, then single tokens until refused
        burst = await asyncio.gather(*(_post(session, bases[i % 3], "shared", 7) for i in range(180)))
        allowed = 7 * burst.count(200)
        assert set(burst) == {200, 429} and allowed > QUOTA - 7
        for i in range(20):
            status = await _post(session, bases[i % 3], "shared", 1)
            allowed += status == 200
            if status == 429:
                break
        assert allowed == QUOTA  # not one token over, not one short, across three replicas
        used = [(await _usage(session, base, "shared"))[1]["periods"][0]["tokens"] for base in bases]
        assert used == [{"used": QUOTA, "limit": QUOTA, "remaining": 0}] * 3

        time.sleep(1.5)  # appendfsync everysec: what is older than a second is on disk
        state["redis"].kill()  # a crash, not a clean shutdown
        # Redis down: the fail-closed key gets the rate limiter's 503, the fail-open one passes
        async with session.post(bases[0] + "/v1/embeddings", json=_body(3),
                                headers={"Authorization": "Bearer k-shared"}) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "rate_limit_unavailable"
        assert await _post(session, bases[1], "lenient", 3) == 200
        assert (await _usage(session, bases[2], "shared"))[0] == 503

        port = int(url.rsplit(":", 1)[1].split("/")[0])
        state["redis"], _ = start_redis(redis_dir, binary, port=port, aof=True)
        deadline = time.monotonic() + 15
        while True:  # the routers reconnect by themselves
            status, body = await _usage(session, bases[0], "shared")
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 200
        day, month = body["periods"]
        assert day["tokens"]["used"] == QUOTA and month["tokens"]["used"] == QUOTA  # kept across the crash
        assert await _post(session, bases[2], "shared", 1) == 429
        # the fail-open key's request, counted once Redis came back
        while time.monotonic() < deadline:
            lenient = (await _usage(session, bases[1], "lenient"))[1]["periods"][0]
            if lenient["requests"]["used"] == 1:
                break
            await asyncio.sleep(0.2)
        assert lenient["tokens"]["used"] == 3 and lenient["requests"]["used"] == 1


async def _commands(raw) -> dict[str, int]:
    """Commands Redis ran, by name (those a script calls included), less those it refused."""
    stats = await raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) - int(v.get("rejected_calls", 0))
            - int(v.get("failed_calls", 0)) for name, v in stats.items()}


def _less_info(commands: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in commands.items() if name != "info"}


async def test_a_request_costs_one_redis_call_with_a_quota_and_none_without(binary, tmp_path, aiohttp_client):
    """The budget, counted by Redis itself: a key with a quota, one script run per request; a key
    without one, nothing on the request's path and one batch for all its requests afterwards."""
    import redis.asyncio as aioredis

    from plugins.rate_limit.quota import QUOTA_METER
    from tests.support.inprocess import serve, write_configs

    server, url = start_redis(tmp_path / "redis", binary)
    raw = aioredis.from_url(url)
    try:
        routing = {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}, "token_ids": "model",
                                   "max_input_tokens": 64}]}
        auth = {"api_keys": [{"name": "metered", "key": "k-metered"}, {"name": "free", "key": "k-free"}]}
        limits = {"per_api_key": {"metered": {"quota": {"tokens_per_day": 10_000}}}}
        client = await serve(aiohttp_client, write_configs(tmp_path / "cfg", routing=routing, auth=auth,
                                                           limits=limits, redis_url=url))
        meter = client.app[QUOTA_METER]
        meter.flush_s = 3600.0  # written only when this test says so
        n = 20
        for key in ("metered", "free"):
            await raw.config_resetstat()
            for _ in range(n):
                resp = await client.post("/v1/embeddings", json=_body(4), headers={"Authorization": f"Bearer k-{key}"})
                assert resp.status == 200
            on_path = await _commands(raw)
            await meter.flush()
            after = await _commands(raw)
            if key == "metered":  # one script run each (the script's own HMGET/HINCRBY/EXPIREAT inside it)
                assert on_path["evalsha"] == n and on_path.get("script|load", 0) <= 1
                assert set(on_path) - {"info", "config|resetstat", "hello", "client|setinfo", "script|load"} == {
                    "evalsha", "hmget", "hincrby", "expireat"}
                assert _less_info(after) == _less_info(on_path)  # nothing left to write afterwards
            else:
                assert set(on_path) <= {"info", "config|resetstat"}
                assert after["hincrby"] == 4 and after["expireat"] == 2  # two periods, two fields, one batch
        body = await (await client.get("/v1/usage", headers={"Authorization": "Bearer k-free"})).json()
        assert [p["tokens"]["used"] for p in body["periods"]] == [4 * n, 4 * n]
    finally:
        await raw.aclose()
        server.stop()
