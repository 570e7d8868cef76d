"""The admission sequences on the real embedded MiniLM, side by side: this tree and, with
``--before REV``, a prior revision of it (extracted with ``git archive``), in one run.

    python -m bench.admission [--before REV] [--quick]

Also the ``admission`` section of ``python -m bench`` (this tree only). ``--quick`` scales the
requests and the route's timeout down by ``QUICK`` (a smoke run of the same proportions).

Sequences (each on a freshly started router, default config, two keys):

* **same key**: a few one-sentence requests in flight, then 2,048 short inputs from the same key;
* **cold**: the first request the model sees is 2,048 inputs of ~100 tokens (more than the idle
  model finishes before the timeout on a few cores): refused at once, or answered;
* **two keys**: key B sends 2,048 short inputs, then 2,048 inputs of ~100 tokens (then 640, which
  the idle model can finish before the timeout); meanwhile key A sends one-sentence requests one
  after another. A's latencies are compared with A's alone on the idle model.

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

from bench.report import Section
from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import ROOT, ServerProcess, base_env, free_port

KEYS = {"a": "sk-bench-admission-a", "b": "sk-bench-admission-b"}
SHORT = [f"sentence number {i} about a topic" for i in range(2048)]
LONG = [f"passage {i}: " + "the quick brown fox jumps over the lazy dog and keeps on running " * 6
        for i in range(2048)]  # ~100 tokens each
TIMEOUT_S = 30.0  # the default route's
QUICK = 8


def _start(tree: Path, work: Path, scale: int = 1) -> tuple[ServerProcess, str]:
    config = copy_default_configs(work / "config")
    routing = read_yaml(config / "routing.yaml")
    routing["embeddings"][0]["upstream"]["timeout_seconds"] = TIMEOUT_S / scale
    write_yaml(config / "routing.yaml", routing)
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


async def _during(session: aiohttp.ClientSession, url: str, inputs: list[str], most: int
                  ) -> tuple[tuple[int, float, str], list[tuple[int, float, str]]]:
    """Key B's request of ``inputs``, and key A's one-sentence requests one after another meanwhile."""
    big = asyncio.create_task(_post(session, url, "b", inputs))
    await asyncio.sleep(0.3)
    during: list[tuple[int, float, str]] = []
    while not big.done() and len(during) < most:
        during.append(await _post(session, url, "a", ["How do I rotate an API key?"]))
    return await big, during


def _ms(values: list[float], q: float) -> int | None:
    return round(_pct(values, q) * 1000) if values else None


async def _sequences(url: str, scale: int = 1) -> dict[str, object]:
    out: dict[str, object] = {}
    short, long = SHORT[:len(SHORT) // scale], LONG[:len(LONG) // scale]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        out["cold: 2,048 inputs of ~100 tokens first"] = await _post(session, url, "b", long)
        for k in range(8):
            await _post(session, url, "a", [f"warm-up sentence {k}"])
        idle = [(await _post(session, url, "a", [f"a sentence about topic {k}"]))[1] for k in range(20)]
        pings = [asyncio.create_task(_post(session, url, "a", [f"one sentence {k}"])) for k in range(4)]
        await asyncio.sleep(0.005)
        bulk = await _post(session, url, "a", short)
        out["same key: 2,048 short inputs"] = bulk
        out["same key: its one-sentence requests"] = [p[0] for p in await asyncio.gather(*pings)]
        big, during = await _during(session, url, short, 40)
        ok = [d[1] for d in during if d[0] == 200]
        out["two keys: B's 2,048 short inputs"] = big
        out["two keys: A's statuses while B's short inputs run"] = sorted(d[0] for d in during)
        out["A's one-sentence p99 idle / during B's 2,048 short inputs (ms)"] = (_ms(idle, 0.99), _ms(ok, 0.99))
        big, during = await _during(session, url, long, 20)
        out["two keys: B's 2,048 inputs of ~100 tokens"] = big
        out["two keys: A's statuses while B's request is in"] = sorted(d[0] for d in during)
        ok = [d[1] for d in during if d[0] == 200]
        out["A's one-sentence p99 idle / during B (ms)"] = (_ms(idle, 0.99), _ms(ok, 0.99))
        # B's request that the idle model can finish in time (~a third of the above): A beside it.
        big, during = await _during(session, url, long[:640 // scale], 40)
        out["two keys: B's 640 inputs of ~100 tokens"] = big
        out["two keys: A's statuses while B's admissible request runs"] = sorted(d[0] for d in during)
        ok = [d[1] for d in during if d[0] == 200]
        out["A's one-sentence p50 / p99 during B's admissible request (ms)"] = (_ms(ok, 0.5), _ms(ok, 0.99))
    return out


def _run(tree: Path, label: str, scale: int = 1) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server, url = _start(tree, Path(tmp), scale)
        try:
            return asyncio.run(_sequences(url, scale))
        finally:
            server.stop()


def _cell(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], float):
        status, seconds, _ = value
        return f"{status} in {seconds:.2f} s"
    return str(value)


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    """The sequences on this tree, for ``python -m bench`` (its ``admission`` section)."""
    scale = QUICK if quick else 1
    figures = _run(ROOT, "after", scale)
    sec = Section("admission", "Admission on the embedded MiniLM: big requests, two keys, a cold model")
    sec.table(["sequence", "outcome"], [[name, _cell(value)] for name, value in figures.items()],
              caption=f"Requests {scale}× smaller and a {TIMEOUT_S / scale:g} s timeout" if quick else "")
    idle, during = figures["A's one-sentence p99 idle / during B's 2,048 short inputs (ms)"]  # type: ignore[misc]
    if idle and during:
        sec.target("one-sentence p99 while another key's 2,048 inputs run / idle p99", during / idle, 4, lower=True)
    return sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a revision to compare with (git archive of it)")
    parser.add_argument("--quick", action="store_true", help=f"requests and timeout {QUICK}× smaller")
    args = parser.parse_args()
    scale = QUICK if args.quick else 1
    results = {}
    if args.before:
        with tempfile.TemporaryDirectory() as old:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
            results["before"] = _run(Path(old), "before", scale)
    results["after"] = _run(ROOT, "after", scale)
    for label, figures in results.items():
        print(f"== {label}")
        for name, value in figures.items():
            print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
