"""The admission sequences of issue 20 on the real embedded MiniLM, side by side: this tree and,
with ``--before REV``, a prior revision of it (extracted with ``git archive``), in one run.

    python -m bench.admission [--before REV]

Sequences (each on a freshly started router, default config, two keys):

* **same key**: a few one-sentence requests in flight, then 2,048 short inputs from the same key;
* **two keys**: key B sends 2,048 inputs of ~100 tokens (then 640, which the idle model can
  finish before the timeout); meanwhile key A sends one-sentence requests one after another.
  A's latencies are compared with A's alone on the idle model.

Prints each request's status and time; a benchmark, not a test (no figure is asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import ROOT, ServerProcess, base_env, free_port

KEYS = {"a": "sk-bench-admission-a", "b": "sk-bench-admission-b"}
SHORT = [f"sentence number {i} about a topic" for i in range(2048)]
LONG = [f"passage {i}: " + "the quick brown fox jumps over the lazy dog and keeps on running " * 6
        for i in range(2048)]  # ~100 tokens each


def _start(tree: Path, work: Path) -> tuple[ServerProcess, str]:
    config = copy_default_configs(work / "config")
    write_yaml(config / "auth.yaml", {"api_keys": [{"name": n, "key": k} for n, k in KEYS.items()]})
    limits = read_yaml(config / "rate_limits.yaml")
    limits["default"] = {"capacity": 10000, "refill_rate": 10000}
    write_yaml(config / "rate_limits.yaml", limits)
    port = free_port()
    env = base_env(ROUTER_ROUTING_PATH=str(config / "routing.yaml"), ROUTER_AUTH_PATH=str(config / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(config / "rate_limits.yaml"),
                   PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = ServerProcess([sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                           env=env, log_path=work / "router.log", cwd=tree)
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/health/ready", timeout=180)
    return server, url


async def _post(session: aiohttp.ClientSession, url: str, key: str, inputs: list[str]) -> tuple[int, float, str]:
    started = time.perf_counter()
    async with session.post(url + "/v1/embeddings", json={"model": "minilm", "input": inputs},
                            headers={"Authorization": f"Bearer {KEYS[key]}"}) as resp:
        body = await resp.read()
        code = "" if resp.status == 200 else body.decode()[:120]
        return resp.status, time.perf_counter() - started, code


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _sequences(url: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for k in range(8):
            await _post(session, url, "a", [f"warm-up sentence {k}"])
        idle = [(await _post(session, url, "a", [f"a sentence about topic {k}"]))[1] for k in range(20)]
        pings = [asyncio.create_task(_post(session, url, "a", [f"one sentence {k}"])) for k in range(4)]
        await asyncio.sleep(0.005)
        bulk = await _post(session, url, "a", SHORT)
        out["same key: 2,048 short inputs"] = bulk
        out["same key: its one-sentence requests"] = [p[0] for p in await asyncio.gather(*pings)]
        big = asyncio.create_task(_post(session, url, "b", LONG))
        await asyncio.sleep(0.3)
        during: list[tuple[int, float, str]] = []
        while not big.done() and len(during) < 20:
            during.append(await _post(session, url, "a", ["How do I rotate an API key?"]))
        out["two keys: B's 2,048 inputs of ~100 tokens"] = await big
        out["two keys: A's statuses while B's request is in"] = sorted(d[0] for d in during)
        ok = [d[1] for d in during if d[0] == 200]
        out["A's one-sentence p99 idle / during B (ms)"] = (round(_pct(idle, 0.99) * 1000),
                                                           round(_pct(ok, 0.99) * 1000) if ok else None)
        # B's request that the idle model can finish in time (~a third of the above): A beside it.
        big = asyncio.create_task(_post(session, url, "b", LONG[:640]))
        await asyncio.sleep(0.3)
        during = []
        while not big.done() and len(during) < 40:
            during.append(await _post(session, url, "a", ["How do I rotate an API key?"]))
        out["two keys: B's 640 inputs of ~100 tokens"] = await big
        out["two keys: A's statuses while B's admissible request runs"] = sorted(d[0] for d in during)
        ok = [d[1] for d in during if d[0] == 200]
        out["A's one-sentence p50 / p99 during B's admissible request (ms)"] = (
            round(_pct(ok, 0.5) * 1000) if ok else None, round(_pct(ok, 0.99) * 1000) if ok else None)
    return out


def _run(tree: Path, label: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server, url = _start(tree, Path(tmp))
        try:
            return asyncio.run(_sequences(url))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a revision to compare with (git archive of it)")
    args = parser.parse_args()
    results = {}
    if args.before:
        with tempfile.TemporaryDirectory() as old:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
            results["before"] = _run(Path(old), "before")
    results["after"] = _run(ROOT, "after")
    for label, figures in results.items():
        print(f"== {label}")
        for name, value in figures.items():
            print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
