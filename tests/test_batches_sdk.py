"""Bulk jobs on a live router on the embedded default (MiniLM), with the openai SDK unmodified
(``.venv-sdk``): the whole round trip with vectors equal to the synchronous answers bit for bit;
a router SIGKILLed mid-job and restarted finishes the job with every line exactly once; two routers
sharing a real Redis and one folder split a job with no line done twice."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.configs import copy_default_configs, write_yaml
from tests.support.processes import ROOT, base_env, free_port, start_router
from tests.support.redis_server import redis_binary, start_redis
from tests.test_conformance import _sdk

KEY, OTHER = "batch-key", "other-key"
SCRIPT = ROOT / "tests" / "conformance" / "batches.py"


def _configs(dest: Path) -> Path:
    configs = copy_default_configs(dest)
    write_yaml(configs / "auth.yaml", {"api_keys": [{"key": KEY, "name": "indexer"}, {"key": OTHER, "name": "other"}]})
    return configs


def _sdk_run(*args: str) -> str:
    result = subprocess.run([str(_sdk("python")), str(SCRIPT), *args], capture_output=True, text=True, timeout=400,
                            cwd=ROOT, env=base_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _corpus(path: Path, n: int) -> Path:
    rows = [{"custom_id": f"doc-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "minilm", "input": f"Passage {i}: " + "lorem ipsum dolor " * (i % 9 + 1)}}
            for i in range(n)]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    return path


def _get(url: str, path: str) -> dict:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _lines_run(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(r'^maas_batch_lines_total\{result="completed"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _once_each(output: Path, n: int) -> None:
    ids = [json.loads(x)["custom_id"] for x in output.read_text().splitlines()]
    assert len(ids) == n and sorted(ids) == sorted(f"doc-{i}" for i in range(n))


def test_the_openai_sdk_round_trip(tmp_path):
    _sdk("python")
    server, url = start_router(_configs(tmp_path / "configs"), tmp_path / "router.log",
                               ROUTER_BATCH_DIR=str(tmp_path / "batches"), ROUTER_BATCH_CHUNK_LINES="16")
    try:
        rows = [json.loads(x) for x in _sdk_run("roundtrip", url, KEY, OTHER).splitlines() if x.startswith("{")]
    finally:
        server.stop()
    failed = [f"{r['call']}: {r['detail']}\n{r.get('trace', '')}" for r in rows if not r["ok"]]
    assert len(rows) == 7 and not failed, "\n".join(failed)
    print("\n".join(f"{r['call']}: {r['detail']}" for r in rows))
    assert "Traceback" not in (tmp_path / "router.log").read_text()


def test_a_router_killed_mid_job_finishes_it_after_a_restart_with_every_line_once(tmp_path):
    _sdk("python")
    n, port = 600, free_port()
    env = {"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_CHUNK_LINES": "32"}
    configs = _configs(tmp_path / "configs")
    server, url = start_router(configs, tmp_path / "router.log", port=port, **env)
    try:
        batch_id = _sdk_run("submit", url, KEY, str(_corpus(tmp_path / "corpus.jsonl", n))).strip()
        deadline = time.monotonic() + 120
        while (done := _get(url, f"/v1/batches/{batch_id}")["request_counts"]["completed"]) < 64:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert done < n, "the job ended before the kill: make it longer"
        server.stop(signal.SIGKILL)
        server, url = start_router(configs, tmp_path / "router2.log", port=port, **env)
        batch = json.loads(_sdk_run("wait", url, KEY, batch_id, str(tmp_path / "out.jsonl")))
    finally:
        server.stop()
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": n, "completed": n, "failed": 0}
    _once_each(tmp_path / "out.jsonl", n)


def test_two_routers_sharing_redis_split_one_job_with_no_line_done_twice(tmp_path):
    _sdk("python")
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    redis, redis_url = start_redis(tmp_path / "redis", binary)
    n = 600
    # Two replicas on one machine: a core each, as two pods would have (two models of two threads
    # each on two cores spin against each other: minutes for a job of seconds).
    env = {"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_CHUNK_LINES": "16",
           "ROUTER_REDIS_URL": redis_url, "OMP_NUM_THREADS": "1"}
    configs = _configs(tmp_path / "configs")
    one, url1 = start_router(configs, tmp_path / "one.log", **env)
    two, url2 = start_router(configs, tmp_path / "two.log", **env)
    try:
        batch_id = _sdk_run("submit", url1, KEY, str(_corpus(tmp_path / "corpus.jsonl", n))).strip()
        batch = json.loads(_sdk_run("wait", url2, KEY, batch_id, str(tmp_path / "out.jsonl")))
        ran = [_lines_run(url1), _lines_run(url2)]
    finally:
        one.stop()
        two.stop()
        redis.stop()
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == n
    _once_each(tmp_path / "out.jsonl", n)
    assert sum(ran) == n and min(ran) > 0, ran  # both worked; no line ran twice


async def test_chunk_claims_decide_alike_in_memory_and_in_redis(tmp_path):
    # A claim is held by one holder; renewing keeps it, or takes it back once lapsed if nobody
    # took it; once lapsed another may take it, and then the first holder's renewal fails.
    import asyncio
    import uuid

    from plugins.batches.redis_store import RedisJobStore
    from plugins.batches.store import LocalJobStore

    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    redis, redis_url = start_redis(tmp_path / "redis", binary)
    stores = [LocalJobStore(tmp_path / "local"), RedisJobStore(redis_url, prefix=f"maas:test:{uuid.uuid4().hex}:")]
    lease = 0.2

    async def steps(store) -> list[bool]:
        seen = [await store.claim("b", 0, "a", lease), await store.claim("b", 0, "b", lease),
                await store.renew("b", 0, "a", lease), await store.renew("b", 0, "b", lease)]
        await asyncio.sleep(lease * 2)  # lapsed, nobody took it
        seen += [await store.renew("b", 0, "a", lease), await store.claim("b", 0, "b", lease)]
        await asyncio.sleep(lease * 2)  # lapsed again; now another takes it
        seen += [await store.claim("b", 0, "b", lease), await store.renew("b", 0, "a", lease)]
        await store.release("b", 0, "a")  # not the holder: nothing happens
        seen += [await store.claim("b", 0, "a", lease), await store.is_done("b", 0)]
        seen += [await store.chunk_done("b", 0, 3, 0, "r1"), await store.chunk_done("b", 0, 2, 1, "r2")]
        return [*seen, await store.is_done("b", 0), await store.is_done("b", 1), await store.results("b")]

    try:
        expected = [True, False, True, False, True, False, True, False, False, False, True, False, True, False,
                    {0: (3, 0, "r1")}]  # the first record of a chunk stands
        assert [await steps(store) for store in stores] == [expected, expected]
        await stores[1]._r.hset(f"{stores[1].p}results:old", "0", "5,1")  # recorded before runs were named
        assert await stores[1].results("old") == {0: (5, 1, "")}
    finally:
        await stores[1].close()
        redis.stop()
