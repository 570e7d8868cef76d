"""Kill a real upstream (the rerank service) under load: two URLs hide it, one URL fails fast."""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from tests.support.processes import start_router
from tests.support.upstreams import router_configs, start_rerank_service

BODY = {"model": "rerank-remote", "query": "capital of France", "documents": ["Paris is in France.", "Bananas."]}
WORKERS = 4


def _start_router(tmp_path, urls: list[str]):
    configs = router_configs(tmp_path / "configs", {"rerank": [{
        "model": "rerank-remote", "served_name": "cross-encoder/ms-marco-MiniLM-L-12-v2",
        "upstream": {"type": "rerank", "urls": urls, "timeout_seconds": 10, "retries": 2,
                     "retry_backoff_ms": 20, "failure_threshold": 2, "cooldown_seconds": 1}}]})
    return start_router(configs, tmp_path / "router.log")


async def _load(url: str, total: int, on_progress) -> list[int]:
    """``total`` requests from WORKERS concurrent clients; ``on_progress(done)`` after each."""
    statuses: list[int] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while len(statuses) < total:
            answer = await client.post(url + "/v1/rerank", json=BODY)
            statuses.append(answer.status_code)
            await on_progress(len(statuses))

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*[worker(client) for _ in range(WORKERS)])
    return statuses


def _metric(text: str, name: str, upstream: str, extra: str = "") -> float:
    pattern = rf'^{name}\{{adapter="rerank",{extra}upstream="{re.escape(upstream)}"\}} (\S+)$'
    found = re.search(pattern, text, re.M)
    assert found, f"{name} for {upstream} is not exported"
    return float(found.group(1))


async def test_two_upstreams_one_killed_mid_run_clients_see_no_error(tmp_path):
    a, a_url = start_rerank_service(tmp_path / "a.log")
    b, b_url = start_rerank_service(tmp_path / "b.log")
    router, url = _start_router(tmp_path, [a_url, b_url])
    try:
        async def kill_a_once(done: int) -> None:
            if done == 20 and a.proc.poll() is None:
                a.kill()

        statuses = await _load(url, 80, kill_a_once)
        assert a.proc.poll() is not None
        assert statuses.count(200) == len(statuses), sorted(set(statuses))
        metrics = httpx.get(url + "/metrics").text
        assert _metric(metrics, "maas_upstream_healthy", a_url) == 0
        assert _metric(metrics, "maas_upstream_requests_total", b_url, 'outcome="ok",') > 20

        # A comes back on its port: after the cooldown it takes traffic again.
        port = int(a_url.rsplit(":", 1)[1])
        a, _ = start_rerank_service(tmp_path / "a2.log", port=port)
        served_before = _metric(httpx.get(url + "/metrics").text, "maas_upstream_requests_total", a_url,
                                'outcome="ok",')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert httpx.post(url + "/v1/rerank", json=BODY, timeout=30).status_code == 200
            metrics = httpx.get(url + "/metrics").text
            if _metric(metrics, "maas_upstream_requests_total", a_url, 'outcome="ok",') > served_before:
                break
            await asyncio.sleep(0.2)
        assert _metric(metrics, "maas_upstream_healthy", a_url) == 1
        assert _metric(metrics, "maas_upstream_requests_total", a_url, 'outcome="ok",') > served_before
    finally:
        for server in (router, a, b):
            server.stop()


async def test_one_upstream_killed_clients_get_502_fast(tmp_path):
    only, only_url = start_rerank_service(tmp_path / "only.log")
    router, url = _start_router(tmp_path, [only_url])
    try:
        async def kill_once(done: int) -> None:
            if done == 10 and only.proc.poll() is None:
                only.kill()

        statuses = await _load(url, 40, kill_once)
        assert statuses[:10] == [200] * 10
        assert set(statuses[10 + WORKERS:]) == {502}  # requests in flight at the kill may still finish
        started = time.monotonic()
        answer = httpx.post(url + "/v1/rerank", json=BODY, timeout=30)
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "upstream_error"
        # "Fast" means no waiting for the 10 s timeout; a generous bound, not a benchmark.
        assert time.monotonic() - started < 5
    finally:
        router.stop()
        only.stop()
