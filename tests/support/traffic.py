"""Steady background traffic against a router, and readers for its config metrics.

``Traffic`` keeps a few tiny embedding requests in flight and probes ``/health/ready``;
every answer that is not a 200 is kept, so a test can say exactly what failed.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Traffic:
    url: str
    model: str = "minilm"
    workers: int = 2
    pause_s: float = 0.01  # between one worker's requests: bounded load on a small machine
    requests: int = 0
    ready_probes: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def __aenter__(self) -> Traffic:
        self._client = httpx.AsyncClient(base_url=self.url, timeout=30)
        self._tasks = [asyncio.create_task(self._embed()) for _ in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._ready()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _embed(self) -> None:
        while not self._stop.is_set():
            try:
                resp = await self._client.post("/v1/embeddings", json={"model": self.model, "input": "hi"})
                if resp.status_code != 200 or len(resp.json()["data"][0]["embedding"]) != 384:
                    self.failures.append(f"embeddings {resp.status_code}: {resp.text[:200]}")
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.failures.append(f"embeddings {type(exc).__name__}: {exc}")
            self.requests += 1
            await asyncio.sleep(self.pause_s)

    async def _ready(self) -> None:
        while not self._stop.is_set():
            try:
                resp = await self._client.get("/health/ready")
                if resp.status_code != 200:
                    self.failures.append(f"ready {resp.status_code}: {resp.text[:200]}")
            except httpx.HTTPError as exc:
                self.failures.append(f"ready {type(exc).__name__}: {exc}")
            self.ready_probes += 1
            await asyncio.sleep(0.05)


async def metrics_text(client: httpx.AsyncClient) -> str:
    resp = await client.get("/metrics")
    resp.raise_for_status()
    return resp.text


async def serving_digest(client: httpx.AsyncClient) -> str | None:
    found = re.search(r'^maas_config_info\{digest="([0-9a-f]+)"\} 1\.0$', await metrics_text(client), re.M)
    return found.group(1) if found else None


async def reloads(client: httpx.AsyncClient, result: str) -> float:
    found = re.search(rf'^maas_config_reloads_total\{{result="{result}"\}} ([0-9.e+]+)$',
                      await metrics_text(client), re.M)
    assert found, f"maas_config_reloads_total{{result={result!r}}} is not exported"
    return float(found.group(1))


async def wait_for(check, timeout: float, what: str) -> float:
    """Await ``check()`` until it is true; return the seconds it took. The bound only stops a hang."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class ThreadedLoad:
    """``clients`` threads posting one embedding request after another through ``make_client()``
    (kept-alive connections) until stopped; every answer that is not a 200, and every
    transport error, is kept."""

    def __init__(self, make_client, body: dict, clients: int = 4, path: str = "/v1/embeddings") -> None:
        import threading

        self.make_client, self.body, self.path = make_client, body, path
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with self.make_client() as http:
            while not self._stop.is_set():
                try:
                    resp = http.post(self.path, json=self.body)
                    if resp.status_code != 200:
                        self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.sent += 1

    def __enter__(self) -> ThreadedLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def kill_one_restart_another(front: dict, make_client, clients: int) -> ThreadedLoad:
    """Kept-alive clients through a front while one router is SIGKILLed and another restarted with
    SIGTERM (``front``: the fronts' fixtures' ``routers``, ``ports``, ``configs``, ``work``, ``env``).
    The load, with what it sent and every failure, for the test to judge."""
    import signal

    from tests.support.processes import start_router

    routers, ports = front["routers"], front["ports"]
    with ThreadedLoad(make_client, {"model": "e", "input": ["a", "b"]}, clients) as load:
        time.sleep(0.5)
        routers[0].proc.send_signal(signal.SIGKILL)  # dies mid-request, no drain
        routers[0].proc.wait(10)
        time.sleep(1.0)
        routers[1].stop()  # SIGTERM: drains, readiness 503, exits
        routers[1] = start_router(front["configs"], front["work"] / "router1-restarted.log", port=ports[1],
                                  **front["env"])[0]
        routers[0] = start_router(front["configs"], front["work"] / "router0-restarted.log", port=ports[0],
                                  **front["env"])[0]
        time.sleep(1.5)
    return load


def echo_routers(work, key: str, key_name: str, count: int = 3) -> dict:
    """``count`` routers on the echo adapter, one API key, as the fronts' tests and benchmark run
    them behind a front: ``{"routers", "ports", "configs", "env", "work"}`` (what
    ``kill_one_restart_another`` takes). Stop them with ``stop_all``."""
    from tests.support import echo
    from tests.support.configs import write_yaml
    from tests.support.processes import ROOT, free_port, start_router

    site = echo.install_plugin(work / "site")
    configs = work / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "e", "upstream": {"type": "echo"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [{"name": key_name, "key": key}]})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 10**6, "refill_rate": 10**6}})
    env = {"ROUTER_DRAIN_SECONDS": "1", "PYTHONPATH": f"{site}:{ROOT}", "ROUTER_TRUSTED_PROXIES": "127.0.0.1"}
    ports = [free_port() for _ in range(count)]
    routers = [start_router(configs, work / f"router{i}.log", port=p, **env)[0] for i, p in enumerate(ports)]
    return {"routers": routers, "ports": ports, "configs": configs, "env": env, "work": work}


def stop_all(base: dict) -> None:
    for router in base["routers"]:
        router.stop()
