"""``python -m bench.versus REV``: the router's overhead at this checkout against revision REV, side
by side in one run (benchmarks.md §1's two figures: req/s at concurrency 16, p50 at concurrency 1).

Both routers route the same fixed upstream (Nginx answering at once) over the ``infinity`` HTTP
adapter, auth and rate limiting on; REV runs from a temporary git worktree with this venv. Runs
alternate between the two, so drifting background load hits both alike; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import servers
from bench.loadgen import _pct, auth_headers, median
from bench.overhead import BODY, PATH, _routing
from tests.support.processes import ROOT, ServerProcess, base_env, free_port


def _router_at(tree: Path, work: Path, name: str, upstream_url: str) -> servers.Server:
    config_dir = servers.write_router_configs(work / name / "configs", _routing("infinity", upstream_url))
    port = free_port()
    env = base_env(ROUTER_ROUTING_PATH=str(config_dir / "routing.yaml"), ROUTER_AUTH_PATH=str(config_dir / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(config_dir / "rate_limits.yaml"), PYTHONPATH=str(tree))
    proc = ServerProcess([sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                         env=env, log_path=work / name / "router.log", cwd=tree)
    server = servers.Server(name, f"http://127.0.0.1:{port}", proc)
    proc.wait_http(server.url + "/health/ready", timeout=120)
    return server


async def _load(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    """(requests per second, p50 ms) of a closed loop of ``concurrency`` keep-alive clients."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(headers={**auth_headers(), "Content-Type": "application/json"},
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url + PATH, data=BODY) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url} answered {resp.status}")
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - began), _pct(latencies, 0.5) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("rev", help="the revision to compare with (e.g. HEAD~3, a commit id)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="maas-versus-"))
    tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.rev], check=True,
                   capture_output=True)
    try:
        with servers.running(servers.fixed_upstream(work)) as up, \
                servers.running(_router_at(tree, work, "base", up.url)) as base, \
                servers.running(_router_at(ROOT, work, "head", up.url)) as head:
            results: dict[str, dict[int, list[tuple[float, float]]]] = {"base": {1: [], 16: []},
                                                                         "head": {1: [], 16: []}}
            for server in (base, head):
                asyncio.run(_load(server.url, 16, 1.0))  # warm-up
            for _ in range(args.repeats):
                for concurrency in (16, 1):
                    for label, server in (("base", base), ("head", head)):
                        results[label][concurrency].append(asyncio.run(_load(server.url, concurrency, args.seconds)))
        rps = {k: median([r for r, _ in v[16]]) for k, v in results.items()}
        p50 = {k: median([p for _, p in v[1]]) for k, v in results.items()}
        print(f"| router | req/s at c=16 | p50 ms at c=1 |\n|---|---|---|\n"
              f"| {args.rev} | {rps['base']:.0f} | {p50['base']:.3f} |\n| this checkout | {rps['head']:.0f} | "
              f"{p50['head']:.3f} |\n| this / {args.rev} | {rps['head'] / rps['base']:.3f} | "
              f"{p50['head'] / p50['base']:.3f} |")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
