"""The embedding cache as a hostile tenant sees it: can key B tell which texts key A embedded,
and can B's traffic evict A's entries? ``python -m bench.cache_oracle [--tree PATH]``

A router (``--tree``: another checkout, e.g. a worktree at an older revision; default this one)
serves one ``paced`` model (bench/fixed_adapter.py: 20 ms per input asleep, so a miss costs what a
model call costs) with the ``embedding_cache`` flag and a 0.2 MiB in-process store, for two keys.

* The oracle: A embeds 25 texts; B sends 50 candidates one by one (A's 25 and 25 new, shuffled)
  and guesses "A sent it" from ``X-Cache-Hits`` > 0, and from a latency under 10 ms. Accuracy
  0.5 is a coin toss: B learns nothing.
* The store: A embeds 40 texts, B sends 1,500 others, A asks for its 40 again: A's hit rate.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import servers
from bench.loadgen import sentences
from tests.support.processes import ROOT, ServerProcess, base_env, free_port

KEYS = {"a": "sk-bench-oracle-alpha", "b": "sk-bench-oracle-beta"}
ROUTING = {"feature_flags": ["embedding_cache"],
           "embeddings": [{"model": "m", "prompts": "none", "dimensions": 384,
                           "upstream": {"type": "paced", "ms_per_input": 20.0}}]}


def _router(tree: Path, work: Path) -> tuple[ServerProcess, str]:
    configs = servers.write_router_configs(work / "configs", ROUTING, api_keys=list(KEYS.values()))
    port = free_port()
    env = base_env(ROUTER_ROUTING_PATH=str(configs / "routing.yaml"), ROUTER_AUTH_PATH=str(configs / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(configs / "rate_limits.yaml"), ROUTER_CACHE_MAX_MB="0.2",
                   PYTHONPATH=str(tree))
    proc = ServerProcess([sys.executable, "-m", "bench.fixed_adapter", "--host", "127.0.0.1", "--port", str(port)],
                         env=env, log_path=work / "router.log", cwd=tree)
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(url + "/health/ready", timeout=120)
    return proc, url


async def _embed(session: aiohttp.ClientSession, url: str, key: str, texts: list[str]) -> tuple[int, float]:
    began = time.perf_counter()
    async with session.post(url + "/v1/embeddings", json={"model": "m", "input": texts, "encoding_format": "base64"},
                            headers={"Authorization": f"Bearer {KEYS[key]}"}) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"router answered {resp.status}")
        return int(resp.headers.get("X-Cache-Hits", "0")), (time.perf_counter() - began) * 1000


async def measure(url: str) -> dict[str, float]:
    secret, fresh = sentences(25, words=12, seed=31), sentences(25, words=12, seed=32)
    async with aiohttp.ClientSession() as session:
        await _embed(session, url, "a", secret)
        candidates = [(t, True) for t in secret] + [(t, False) for t in fresh]
        random.Random(7).shuffle(candidates)
        by_header = by_time = 0
        for text, sent_by_a in candidates:
            hits, ms = await _embed(session, url, "b", [text])
            by_header += (hits > 0) == sent_by_a
            by_time += (ms < 10.0) == sent_by_a
        own = sentences(40, words=12, seed=33)
        await _embed(session, url, "a", own)
        flood = sentences(1500, words=12, seed=34)
        for i in range(0, len(flood), 50):
            await _embed(session, url, "b", flood[i:i + 50])
        hits, _ = await _embed(session, url, "a", own)
    n = len(candidates)
    return {"header_accuracy": by_header / n, "latency_accuracy": by_time / n, "a_hit_rate_after_b": hits / len(own)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose router runs (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _router(args.tree.resolve(), Path(tmp))
        try:
            figures = asyncio.run(measure(url))
        finally:
            proc.stop()
    print(f"cache-oracle {args.tree}: " + ", ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
