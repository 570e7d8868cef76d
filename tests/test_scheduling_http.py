"""The scheduler behind the HTTP API: refusals in the caller's dialect with Retry-After, per-key
policies from rate_limits.yaml, X-Priority, usage by key name; and, through a real router
process on the embedded MiniLM, work dropped when its client hangs up (or half-closes)."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import numpy as np
import orjson
import pytest

from core import hookimpl
from core.adapters import Adapter, Batching, EmbedResult
from core.app import create_app
from core.http import GATEWAY
from core.options import Option, OptionSchema
from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.gated import GatedModel
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.support.processes import start_router
from tests.support.waiting import wait_for

KEYS = {"alpha": "sk-test-alpha-0001", "beta": "sk-test-beta-0002", "gamma": "sk-test-gamma-0003"}


class HeldAdapter(Adapter):
    """A model that runs a batch only when the test releases it (``GATE``)."""

    upstream_options = OptionSchema([Option("max_batch_size", int, 4, "items per batch", minimum=1)])
    GATE: GatedModel

    def batching(self, route):
        return Batching(max_in_flight=1, split=True, max_batch_size=self.config["max_batch_size"])

    async def embed(self, route, inputs, call):
        await HeldAdapter.GATE.run(list(inputs), True)
        return EmbedResult(np.ones((len(inputs), 4), dtype=np.float32))


class HeldPlugin:
    @hookimpl
    def register_adapters(self, register):
        register("held", HeldAdapter)


@pytest.fixture
async def held(aiohttp_client, tmp_path):
    HeldAdapter.GATE = GatedModel()
    settings = write_configs(
        tmp_path,
        routing={"embeddings": [{"model": "held", "upstream": {"type": "held"}, "prompts": "none",
                                 "options": {"queue_max_items": 8}}]},
        auth={"api_keys": [{"name": n, "key": k} for n, k in KEYS.items()]},
        limits={"default": {"capacity": 1000, "refill_rate": 1000},
                "per_api_key": {"alpha": {"max_queued": 4},
                                "beta": {"capacity": 1000, "refill_rate": 1000, "priority_header": True}}})
    pm = echo_plugin_manager()
    pm.register(HeldPlugin(), name="held")
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    yield client
    HeldAdapter.GATE.release(1000)


def _post(client, key: str, inputs: list[str], path: str = "/v1/embeddings", **headers: str):
    body = {"model": "held", "input": inputs} if path == "/v1/embeddings" else \
        {"model": "held", "texts": inputs, "input_type": "search_document"}
    return asyncio.create_task(client.post(path, json=body, headers={"Authorization": f"Bearer {KEYS[key]}",
                                                                     **headers}))


async def _queued(client, n: int) -> None:
    gateway = client.app[GATEWAY]
    for _ in range(1000):
        if sum(s.queued_items for s in gateway.services.schedulers.schedulers) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {n} inputs queued")


async def _finish(tasks) -> list[int]:
    while not all(t.done() for t in tasks):
        HeldAdapter.GATE.release()
        await asyncio.sleep(0.002)
    return [(await t).status for t in tasks]


async def test_a_key_over_its_queue_bound_gets_429_in_its_dialect_others_are_served(held):
    blocker = _post(held, "gamma", ["block"])
    await HeldAdapter.GATE.started(1)
    first = _post(held, "alpha", ["a1", "a2", "a3"])
    await _queued(held, 3)
    resp = await _post(held, "alpha", ["a4", "a5"])
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["code"] == "queue_full_for_key" and body["error"]["type"] == "rate_limit_error"
    assert int(resp.headers["Retry-After"]) >= 1 and int(resp.headers["retry-after-ms"]) > 0
    cohere = await _post(held, "alpha", ["a4", "a5"], path="/v2/embed")  # Cohere's shape on its path
    assert cohere.status == 429 and set(await cohere.json()) == {"message"}
    other = _post(held, "beta", ["b1"])
    assert await _finish([blocker, first, other]) == [200, 200, 200]


async def test_a_saturated_model_answers_503_with_retry_after_and_a_fair_share_still_gets_in(held):
    blocker = _post(held, "gamma", ["block"])
    await HeldAdapter.GATE.started(1)
    hog = _post(held, "beta", [f"b{i}" for i in range(8)])  # the route's bound: 8 queued inputs
    await _queued(held, 8)
    resp = await _post(held, "alpha", ["a1", "a2", "a3", "a4"])  # over its share of a full queue
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "model_saturated" and "Retry-After" in resp.headers
    small = _post(held, "alpha", ["a1"])  # within its share: admitted, and served in its turn
    assert await _finish([blocker, hog, small]) == [200, 200, 200]


async def test_x_priority_is_honoured_only_for_keys_allowed_to_set_it(held):
    blocker = _post(held, "gamma", ["block"])
    await HeldAdapter.GATE.started(1)
    bulk = _post(held, "beta", ["bulk"], **{"X-Priority": "bulk"})
    ignored = _post(held, "alpha", ["ignored"], **{"X-Priority": "bulk"})  # alpha may not choose: interactive
    await _queued(held, 2)
    interactive = _post(held, "gamma", ["inter"])
    await _queued(held, 3)
    assert await _finish([blocker, bulk, ignored, interactive]) == [200] * 4
    order = [x for batch in HeldAdapter.GATE.batches[1:] for x in batch]
    assert order.index("bulk") > order.index("inter") and order.index("ignored") < order.index("bulk")
    bad = await _post(held, "beta", ["x"], **{"X-Priority": "urgent"})
    assert bad.status == 400 and (await bad.json())["error"]["param"] == "X-Priority"


async def test_usage_is_counted_by_key_name_and_model_never_by_key(held):
    tasks = [_post(held, "alpha", ["one", "two"]), _post(held, "beta", ["three"])]
    assert await _finish(tasks) == [200, 200]
    text = await (await held.get("/metrics")).text()
    assert re.search(r'maas_usage_requests_total\{key="alpha",model="held"\} 1\.0', text)
    assert re.search(r'maas_usage_inputs_total\{key="alpha",model="held"\} 2\.0', text)
    assert re.search(r'maas_usage_tokens_total\{key="beta",model="held"\} [1-9]', text)
    assert re.search(r'maas_batch_size_count\{queue="held"\}', text)
    assert not any(key in text for key in KEYS.values())


def _raw_embeddings(port: int, n: int) -> tuple[socket.socket, bytes]:
    body = orjson.dumps({"model": "minilm", "input": [f"sentence number {i} about a topic" for i in range(n)]})
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port))
    return sock, head + body


def _metric(url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _wait_metric(url: str, name: str, above: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = _metric(url, name)
        if value > above:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{name} stayed at {above}")


def _until_some_batches_ran(url: str, items: int, timeout: float = 60.0) -> None:
    """Until the queue holds part of the request: queued, and at least one batch of it taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if 0 < _metric(url, "maas_queue_depth") < items:
            return
        time.sleep(0.02)
    raise AssertionError("the request's items never started through the model")


def test_work_of_a_client_that_hangs_up_or_half_closes_is_dropped(tmp_path):
    config = copy_default_configs(tmp_path / "config")
    # Room for 2,048 inputs however busy the machine: admitted (not refused for its deadline), so
    # there is queued work for the client to leave.
    routing = read_yaml(config / "routing.yaml")
    routing["embeddings"][0]["upstream"]["timeout_seconds"] = 600
    write_yaml(config / "routing.yaml", routing)
    router, url = start_router(config, tmp_path / "router.log")
    port = int(url.rsplit(":", 1)[1])
    try:
        for how in ("close", "half-close"):
            before = _metric(url, "maas_queue_cancelled_inputs_total")
            sock, request = _raw_embeddings(port, 2048)
            sock.sendall(request)
            _until_some_batches_ran(url, 2048)  # its items queued and the model working through them
            if how == "close":
                sock.close()
            else:
                sock.shutdown(socket.SHUT_WR)  # a FIN, as Nginx passes on a client's
            dropped = _wait_metric(url, "maas_queue_cancelled_inputs_total", before) - before
            assert 0 < dropped < 2048, (how, dropped)
            if how == "half-close":
                sock.close()
        import urllib.request

        ping = urllib.request.Request(url + "/v1/embeddings", data=orjson.dumps({"model": "minilm", "input": "ping"}),
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(ping, timeout=30) as resp:
            assert resp.status == 200

        def both_logged() -> bool:  # access lines are written within 50 ms of the first waiting
            log = router.log_text()
            return log.count('"status": 499') >= 2 or log.count("POST /v1/embeddings 499") >= 2

        assert wait_for(both_logged), router.log_text()[-3000:]
    finally:
        router.stop()


def _limits(tmp_path, text: str):
    from core.config import Settings
    from core.config.access import parse_auth
    from core.config.limits import parse_rate_limits
    from core.config.yamlfile import load_yaml
    from core.gateway import Gateway

    (tmp_path / "rate_limits.yaml").write_text(text)
    (tmp_path / "auth.yaml").write_text("api_keys:\n  - {name: alpha, key: sk-test-alpha-0001}\n")
    auth = parse_auth(load_yaml(tmp_path / "auth.yaml")[0])
    owners = Gateway(Settings()).limits  # the scheduler's part and the rate limiter's
    return parse_rate_limits(load_yaml(tmp_path / "rate_limits.yaml")[0], owners), auth


def test_a_per_key_policy_may_stand_alone_and_then_default_is_its_bucket(tmp_path):
    limits, auth = _limits(tmp_path, "default: {capacity: 5, refill_rate: 1}\n"
                                     "per_api_key:\n  alpha: {weight: 2.5, priority: bulk, max_queued: 100}\n")
    assert limits.resolve("buckets", auth)[0] == {}  # no bucket of its own: 'default' applies
    policy = limits.resolve("scheduling", auth)[0]["alpha"]
    assert (policy.weight, policy.priority, policy.max_queued, policy.priority_header) == (2.5, "bulk", 100, False)


@pytest.mark.parametrize(("entry", "field"), [
    ("{weight: 0}", "weight"), ("{priority: urgent}", "priority"), ("{max_queued: 0}", "max_queued"),
    ("{priority_header: 'yes'}", "priority_header"), ("{capacity: 5, refill_rate: 1, wieght: 2}", "wieght"),
])
def test_a_bad_policy_field_is_a_config_error_at_its_line(tmp_path, entry, field):
    from core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _limits(tmp_path, f"per_api_key:\n  alpha: {entry}\n")
    assert field in str(info.value) and info.value.line == 2
