"""What a quota costs a request: the router in process on the echo adapter, one client sending
requests one after another (latency, not throughput), for keys with neither, a quota, a token
bucket (what a limit costs today, for scale) and both, without and with Redis (a real redis-server
on loopback). Rounds interleave the cases so drifting
background load hits each alike; medians of the per-round means are shown, as ratios to the first.

    .venv/bin/python -m bench.quota [--requests 400] [--rounds 5]

Not a section of ``python -m bench``: a check to run when the quota's path changes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from core.app import create_app
from core.http import GATEWAY
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.support.redis_server import redis_binary, start_redis

ROUTING = {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}, "token_ids": "model",
                           "max_input_tokens": 64}]}
KEYS = {"free": "no bucket, no quota", "metered": "a quota", "bucketed": "a token bucket (for scale)",
        "both": "a token bucket and a quota"}
AUTH = {"api_keys": [{"name": name, "key": f"k-{name}"} for name in KEYS]}
QUOTA = {"tokens_per_day": 10**12, "tokens_per_month": 10**13}
BUCKET = {"capacity": 10**9, "refill_rate": 10**6}
LIMITS = {"per_api_key": {"metered": {"quota": QUOTA}, "bucketed": BUCKET, "both": {**BUCKET, "quota": QUOTA}}}
BODY = {"model": "echo-emb", "input": [[1, 2, 3, 4, 5, 6, 7, 8]]}


async def _client(work: Path, redis_url: str | None) -> TestClient:
    settings = write_configs(work, routing=ROUTING, auth=AUTH, limits=LIMITS, redis_url=redis_url)
    client = TestClient(TestServer(create_app(settings, echo_plugin_manager())))
    await client.start_server()
    while not client.app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client


async def _mean_ms(client: TestClient, key: str, n: int) -> float:
    headers = {"Authorization": f"Bearer k-{key}"}
    started = time.perf_counter()
    for _ in range(n):
        async with client.post("/v1/embeddings", json=BODY, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
    return (time.perf_counter() - started) / n * 1000


async def main(requests: int, rounds: int) -> None:
    binary = redis_binary()
    if binary is None:
        raise SystemExit("redis-server is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, url = start_redis(work / "redis", binary)
        clients = {"memory": await _client(work / "memory", None), "redis": await _client(work / "redis-cfg", url)}
        cases = [(store, key) for store in ("memory", "redis") for key in KEYS]
        figures: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
        try:
            for store, key in cases:  # warm up
                await _mean_ms(clients[store], key, 50)
            for _ in range(rounds):
                for case in cases:
                    figures[case].append(await _mean_ms(clients[case[0]], case[1], requests))
        finally:
            for client in clients.values():
                await client.close()
            server.stop()
    base = statistics.median(figures[cases[0]])
    print(f"{requests} sequential requests x {rounds} rounds, median of round means")
    for (store, key), values in figures.items():
        ms = statistics.median(values)
        print(f"  store {store:6}  key with {KEYS[key]:27}: {ms:.3f} ms/request, x{ms / base:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
