"""Token buckets: the arithmetic (property tests), the HTTP contract, reloads, token budgets, flags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.rate_limit.buckets import MemoryBucketStore, decide, refill
from tests.support.configs import write_yaml
from tests.support.inprocess import ECHO_ROUTING, gateway_of, serve, write_configs

EMB = "/v1/embeddings"
KEYS = {"api_keys": ["alpha-key", {"name": "beta", "key": "beta-key"}, "gamma-key"],
        "allow_anonymous_without_api_keys": False}
SLOW = 0.001  # refill per second: nothing refills while a test runs

capacities = st.floats(min_value=1, max_value=1000)
rates = st.floats(min_value=0, max_value=500)
steps = st.lists(st.tuples(st.floats(min_value=0, max_value=5), st.integers(min_value=1, max_value=20)),
                 min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(capacity=capacities, rate=rates, steps=steps)
def test_admitted_never_exceeds_capacity_plus_refill(capacity, rate, steps):
    state, now, spent = None, 0.0, 0.0
    for dt, cost in steps:
        now += dt
        state, allowed = decide(state, capacity, rate, cost, now)
        spent += cost if allowed else 0
        assert -1e-9 <= state.tokens <= capacity
    assert spent <= capacity + rate * now + 1e-6 * max(1.0, capacity + rate * now)


@settings(max_examples=200, deadline=None)
@given(capacity=capacities, rate=st.floats(min_value=0.01, max_value=500), steps=steps)
def test_a_refused_request_fits_after_its_retry_after(capacity, rate, steps):
    from plugins.rate_limit.buckets import Decision

    state, now = None, 0.0
    for dt, cost in steps:
        now += dt
        state, allowed = decide(state, capacity, rate, cost, now)
        decision = Decision.of(allowed, state.tokens, capacity, rate, cost)
        if not allowed and cost <= capacity:
            assert decision.retry_after > 0
            later = refill(state, capacity, rate, now + decision.retry_after * (1 + 1e-9) + 1e-9)
            assert later.tokens >= cost - 1e-9 * capacity
        if allowed:
            assert decision.retry_after == 0


@settings(max_examples=200, deadline=None)
@given(capacity=capacities, rate=rates, idle=st.floats(min_value=0, max_value=1e6), first=st.floats(0, 1e6))
def test_an_idle_bucket_refills_to_capacity_and_no_further(capacity, rate, idle, first):
    state, _ = decide(None, capacity, rate, capacity, first)  # drain it
    assert state.tokens == pytest.approx(0, abs=1e-9 * capacity)
    later = refill(state, capacity, rate, first + idle)
    elapsed = (first + idle) - first  # what the clock can represent: idle may be below first's ulp
    assert later.tokens == pytest.approx(min(capacity, rate * elapsed), rel=1e-9, abs=1e-9)
    assert refill(later, capacity, rate, first).tokens == later.tokens  # time never runs backwards


async def test_memory_store_forgets_refilled_buckets():
    clock = [0.0]
    store = MemoryBucketStore(clock=lambda: clock[0], max_buckets=10)
    for i in range(10):
        await store.take(f"anon:10.0.0.{i}", 2, 1, 1)
    clock[0] = 5.0  # all of them full again
    await store.take("anon:10.0.1.1", 2, 1, 1)
    assert len(store) == 1


def _limits(**per_key) -> dict:
    return {"default": {"capacity": 3, "refill_rate": SLOW}, "anonymous": {"capacity": 2, "refill_rate": SLOW},
            "per_api_key": per_key}


async def test_429_with_headers_and_per_key_buckets(aiohttp_client, tmp_path):
    limits = _limits(**{"alpha-key": {"capacity": 1, "refill_rate": SLOW},  # by the key, as in the guide
                        "beta": {"capacity": 2, "refill_rate": SLOW}})  # by the key's name
    client = await serve(aiohttp_client, write_configs(tmp_path, auth=KEYS, limits=limits))

    async def call(key):
        return await client.post(EMB, json={"model": "echo-emb", "input": "x"},
                                 headers={"Authorization": f"Bearer {key}"})

    ok = await call("alpha-key")
    assert ok.status == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "1"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    limited = await call("alpha-key")
    assert limited.status == 429
    err = (await limited.json())["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert int(limited.headers["Retry-After"]) >= 1
    assert int(limited.headers["retry-after-ms"]) > 0
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert [(await call("beta-key")).status for _ in range(3)] == [200, 200, 429]
    assert [(await call("gamma-key")).status for _ in range(4)] == [200, 200, 200, 429]  # default
    metrics = await (await client.get("/metrics")).text()
    assert 'maas_rate_limited_total{caller="beta",reason="requests"} 1.0' in metrics


async def test_anonymous_callers_are_bucketed_per_address_behind_a_trusted_proxy(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path, limits=_limits(),
                                                       environ={"ROUTER_TRUSTED_PROXIES": "127.0.0.1"}))

    async def call(ip):
        return (await client.post(EMB, json={"model": "echo-emb", "input": "x"},
                                  headers={"X-Real-IP": ip})).status

    assert [await call("203.0.113.1") for _ in range(3)] == [200, 200, 429]
    assert [await call("203.0.113.2") for _ in range(2)] == [200, 200]  # another client, its own bucket


async def test_a_reload_keeps_buckets_and_applies_new_limits(aiohttp_client, tmp_path):
    limits = _limits(**{"alpha-key": {"capacity": 2, "refill_rate": SLOW},
                        "beta": {"capacity": 2, "refill_rate": SLOW}})
    settings = write_configs(tmp_path, auth=KEYS, limits=limits)
    client = await serve(aiohttp_client, settings)

    async def call(key):
        return await client.post(EMB, json={"model": "echo-emb", "input": "x"}, headers={"X-API-Key": key})

    for key in ("alpha-key", "beta-key"):
        assert [(await call(key)).status for _ in range(3)] == [200, 200, 429]
    limits["per_api_key"]["beta"] = {"capacity": 5, "refill_rate": SLOW}
    write_yaml(tmp_path / "rate_limits.yaml", limits)
    await gateway_of(client).load()  # the reload path the file watcher calls
    assert (await call("alpha-key")).status == 429  # unchanged limits: the drained bucket stays drained
    beta = await call("beta-key")  # changed limits: what beta used is kept, the new capacity applies
    assert beta.status == 429
    assert beta.headers["x-ratelimit-limit-requests"] == "5"


async def test_tokens_per_minute_budget_is_charged_with_the_token_count(aiohttp_client, tmp_path):
    limits = {"default": {"capacity": 100, "refill_rate": 100, "tokens_per_minute": 10}}
    client = await serve(aiohttp_client, write_configs(tmp_path, auth=KEYS, limits=limits))
    key = {"X-API-Key": "gamma-key"}
    first = await client.post(EMB, json={"model": "echo-emb", "input": ["hello world"]}, headers=key)
    used = (await first.json())["usage"]["prompt_tokens"]
    assert used == 4  # [CLS] hello world [SEP]
    assert first.headers["x-ratelimit-remaining-tokens"] == str(10 - used)
    second = await client.post(EMB, json={"model": "echo-emb", "input": ["hello world"]}, headers=key)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(10 - 2 * used)
    third = await client.post(EMB, json={"model": "echo-emb", "input": ["hello world"]}, headers=key)
    assert third.status == 429
    assert "tokens per minute" in (await third.json())["error"]["message"]
    too_big = await client.post(EMB, json={"model": "echo-emb", "input": ["word " * 20]}, headers=key)
    assert too_big.status == 413
    assert (await too_big.json())["error"]["code"] == "token_budget_exceeded"


@pytest.mark.parametrize("fail_open", [False, True])
async def test_flag_rate_limit_fail_open_decides_what_an_unreachable_redis_means(aiohttp_client, tmp_path,
                                                                                fail_open):
    from tests.support.processes import free_port

    routing = dict(ECHO_ROUTING, feature_flags=["rate_limit_fail_open"] if fail_open else [])
    settings = write_configs(tmp_path, routing=routing, limits=_limits(),
                             redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    client = await serve(aiohttp_client, settings)
    resp = await client.post(EMB, json={"model": "echo-emb", "input": "x"})
    if fail_open:
        assert resp.status == 200
        assert "x-ratelimit-remaining-requests" not in resp.headers
    else:
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "rate_limit_unavailable"
        assert resp.headers["Retry-After"] == "1"
    metrics = await (await client.get("/metrics")).text()
    outcome = "admitted" if fail_open else "rejected"
    assert f'maas_rate_limit_store_errors_total{{outcome="{outcome}",store="redis"}} 1.0' in metrics


def test_reset_durations_use_openai_format():
    from plugins.rate_limit.stages import duration

    assert duration(0.25) == "250ms"
    assert duration(1.5) == "1.5s"
    assert duration(360) == "6m0s"
    assert duration(42) == "42s"
