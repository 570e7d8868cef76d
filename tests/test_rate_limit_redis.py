"""The Redis bucket store against a real redis-server: same decisions as the in-process store,
and one budget shared by three router processes."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.rate_limit.buckets import MemoryBucketStore
from plugins.rate_limit.redis_store import RedisBucketStore
from tests.support.configs import write_yaml
from tests.support.echo import install_plugin
from tests.support.processes import ROOT, start_router
from tests.support.redis_server import redis_binary, start_redis

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    server, url = start_redis(tmp_path_factory.mktemp("redis"), binary)
    yield url
    server.stop()


sequences = st.lists(st.tuples(st.floats(min_value=0, max_value=3, allow_subnormal=False),
                               st.integers(min_value=1, max_value=7)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(capacity=st.floats(min_value=1, max_value=50), rate=st.floats(min_value=0, max_value=20), steps=sequences)
def test_memory_and_redis_stores_decide_the_same(redis_url, capacity, rate, steps):
    async def run():
        memory, shared = MemoryBucketStore(), RedisBucketStore(redis_url)
        key, now = uuid.uuid4().hex, 1_700_000_000.0
        try:
            for dt, cost in steps:
                now += dt
                a = await memory.take(key, capacity, rate, cost, now=now)
                b = await shared.take(key, capacity, rate, cost, now=now)
                assert a == b  # every field, to the last bit
        finally:
            await shared.close()

    asyncio.run(run())


async def test_redis_clock_path_and_expiry(redis_url):
    import redis.asyncio as aioredis

    store = RedisBucketStore(redis_url, prefix="maas:test:")
    raw = aioredis.from_url(redis_url)
    try:
        first = await store.take("clock", 5, 1, 1)
        second = await store.take("clock", 5, 1, 1)
        assert first.allowed and second.allowed
        assert 3 <= second.remaining < 3.5  # 5 - 2, plus what refilled between the two calls
        ttl_ms = await raw.pttl("maas:test:clock")
        assert 0 < ttl_ms <= 3000  # gone once it would be full again (2 s), plus 1 s
    finally:
        await raw.aclose()
        await store.close()


CAPACITY, REFILL, SECONDS, OFFERED = 30, 20.0, 4.0, 60.0  # offered: requests per second, all replicas


@pytest.fixture(scope="module")
def replicas(redis_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("replicas")
    site = install_plugin(work / "site")
    cfg = work / "configs"
    cfg.mkdir()
    write_yaml(cfg / "routing.yaml", {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}}]})
    write_yaml(cfg / "auth.yaml", {"api_keys": [{"name": "shared", "key": "replica-test-key"}]})
    write_yaml(cfg / "rate_limits.yaml", {"default": {"capacity": 1, "refill_rate": 0.001},
                                          "per_api_key": {"shared": {"capacity": CAPACITY,
                                                                     "refill_rate": REFILL}}})
    servers, urls = [], []
    try:
        for i in range(3):
            server, url = start_router(cfg, work / f"router-{i}.log", ROUTER_REDIS_URL=redis_url,
                                       PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
            servers.append(server)
            urls.append(url)
        yield urls
    finally:
        for server in servers:
            server.stop()


async def test_three_replicas_share_one_budget(redis_url, replicas, record_property):
    import redis.asyncio as aioredis

    raw = aioredis.from_url(redis_url)
    await raw.delete("maas:rl:req:key:shared")
    sec, usec = await raw.time()
    started_redis = sec + usec / 1e6
    statuses: list[tuple[int, int]] = []
    headers = {"Authorization": "Bearer replica-test-key"}
    body = {"model": "echo-emb", "input": "x"}

    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> None:
            async with session.post(replicas[i % 3] + "/v1/embeddings", json=body, headers=headers) as resp:
                await resp.read()
                statuses.append((i % 3, resp.status))

        tasks = []
        start = time.monotonic()
        for i in range(int(SECONDS * OFFERED)):
            await asyncio.sleep(max(0.0, start + i / OFFERED - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    # The window, on the clock that made the decisions: from just before the first decision
    # to the last one (the script stamps each decision on the bucket).
    last_decision = float(await raw.hget("maas:rl:req:key:shared", "updated"))
    await raw.aclose()
    window = last_decision - started_redis
    admitted = sum(1 for _, s in statuses if s == 200)
    expected = CAPACITY + REFILL * window
    record_property("admitted", admitted)
    record_property("expected", round(expected, 1))
    print(f"\nthree replicas: admitted {admitted} of {len(statuses)} in {window:.2f} s; "
          f"expected {expected:.1f} (capacity {CAPACITY} + {REFILL:g}/s x {window:.2f} s)")
    assert {s for _, s in statuses} == {200, 429}
    assert abs(admitted - expected) <= 0.02 * expected
    per_replica = [sum(1 for r, s in statuses if r == i and s == 200) for i in range(3)]
    assert all(n > 0 for n in per_replica)  # every replica admitted some, from the one budget
