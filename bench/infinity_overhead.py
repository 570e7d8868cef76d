"""Router → Infinity against Infinity directly: requests/s and latency at the same concurrency.

Starts a real infinity-emb server (the packaged MiniLM) and a router in front of it, then
sends the same one-sentence embeddings requests to both, interleaving the two targets so a
noisy machine hurts both alike. Usage:

    python bench/infinity_overhead.py [--concurrency 8] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import start_router  # noqa: E402
from tests.support.upstreams import router_configs, start_infinity  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


async def run_load(url: str, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    body = {"model": model, "input": SENTENCE}
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.post(url + "/v1/embeddings", json=body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*[worker(session) for _ in range(concurrency)])
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000, "n": len(latencies), "errors": errors}


async def bench(infinity_url: str, router_url: str, args: argparse.Namespace) -> None:
    targets = {"infinity direct": (infinity_url, "minilm"), "router → infinity": (router_url, "minilm-inf")}
    for name, (url, model) in targets.items():  # warm both paths
        await run_load(url, model, args.concurrency, 2)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, (url, model) in targets.items():
            results[name].append(await run_load(url, model, args.concurrency, args.seconds))
    print(f"concurrency {args.concurrency}, {args.rounds} x {args.seconds:g} s per target, one sentence per request")
    print(f"{'target':<20} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
    for name, runs in results.items():
        print(f"{name:<20} {statistics.median(r['rps'] for r in runs):>8.1f} "
              f"{statistics.median(r['p50_ms'] for r in runs):>8.2f} "
              f"{statistics.median(r['p95_ms'] for r in runs):>8.2f} {sum(r['errors'] for r in runs):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        infinity, infinity_url = start_infinity(work / "infinity.log")
        try:
            configs = router_configs(work / "configs", {"embeddings": [{
                "model": "minilm-inf", "served_name": "minilm",
                "upstream": {"type": "infinity", "url": infinity_url, "timeout_seconds": 30}}]})
            router, router_url = start_router(configs, work / "router.log")
            try:
                asyncio.run(bench(infinity_url, router_url, args))
            finally:
                router.stop()
        finally:
            infinity.stop()


if __name__ == "__main__":
    main()
