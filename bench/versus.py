"""``python -m bench.versus REV``: the router's overhead at this checkout against revision REV, side
by side in one run (benchmarks.md §1's two figures: req/s at concurrency 16, p50 at concurrency 1).

Both routers route the same fixed upstream (Nginx answering at once) over the ``infinity`` HTTP
adapter, auth and rate limiting on; REV runs from a temporary git worktree with this venv. Runs
alternate between the two, so drifting background load hits both alike; medians are printed.

``python -m bench`` runs it too (section ``versus``), against ``reference()``: the newest release
tag, or the fixed revision ``REFERENCE`` until the project tags releases. So every report records a
named revision's figures beside today's, measured in the same run on the same machine.
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
from bench.report import Section
from tests.support.processes import ROOT, ServerProcess, base_env, free_port

REFERENCE = "62d297f"  # the named revision every report measures against until releases are tagged


def reference() -> str:
    """The newest release tag reachable from this checkout, else ``REFERENCE``."""
    tag = subprocess.run(["git", "-C", str(ROOT), "describe", "--tags", "--abbrev=0"], capture_output=True, text=True)
    return tag.stdout.strip() if tag.returncode == 0 and tag.stdout.strip() else REFERENCE


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


def measure(rev: str, *, seconds: float, repeats: int) -> dict[str, tuple[float, float]]:
    """``{"base": (req/s at c=16, p50 ms at c=1), "head": (...)}``: ``rev`` and this checkout, medians."""
    work = Path(tempfile.mkdtemp(prefix="maas-versus-"))
    tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    try:
        with servers.running(servers.fixed_upstream(work)) as up, \
                servers.running(_router_at(tree, work, "base", up.url)) as base, \
                servers.running(_router_at(ROOT, work, "head", up.url)) as head:
            results: dict[str, dict[int, list[tuple[float, float]]]] = {"base": {1: [], 16: []},
                                                                         "head": {1: [], 16: []}}
            for server in (base, head):
                asyncio.run(_load(server.url, 16, 1.0))  # warm-up
            for _ in range(repeats):
                for concurrency in (16, 1):
                    for label, server in (("base", base), ("head", head)):
                        results[label][concurrency].append(asyncio.run(_load(server.url, concurrency, seconds)))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return {k: (median([r for r, _ in v[16]]), median([p for _, p in v[1]])) for k, v in results.items()}


def _rows(rev: str, figures: dict[str, tuple[float, float]]) -> list[list]:
    (b_rps, b_p50), (h_rps, h_p50) = figures["base"], figures["head"]
    return [[rev, b_rps, b_p50], ["this checkout", h_rps, h_p50], [f"this / {rev}", h_rps / b_rps, h_p50 / b_p50]]


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    """The report's section: the named revision's figures beside today's."""
    rev = reference()
    seconds, repeats = (2.0, 1) if quick else (6.0, 3)
    figures = measure(rev, seconds=seconds, repeats=repeats)
    sec = Section("versus", f"1b. This checkout against {rev}",
                  notes=[f"`python -m bench.versus {rev}`: both routers in one run over the `infinity` adapter to "
                         "the fixed upstream, auth and rate limiting on; aiohttp keep-alive clients, "
                         f"{seconds:g} s per run, {repeats} run(s) each, interleaved; medians. The reference is the "
                         f"newest release tag, or {REFERENCE} until releases are tagged. The calls each request "
                         "makes at both revisions: `python -m bench.calls` (docs/overhead.md)."])
    sec.table(["router", "req/s c16", "p50 ms c1"], _rows(rev, figures))
    sec.target(f"req/s ≥ 1.1× {rev} (c16)", figures["head"][0] / figures["base"][0], 1.1)
    sec.target(f"p50 ≤ {rev}'s (c1)", figures["head"][1] / figures["base"][1], 1.0, lower=True)
    return sec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("rev", nargs="?", default=None, help=f"the revision to compare with (default: the newest "
                        f"release tag, else {REFERENCE})")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rev = args.rev or reference()
    rows = _rows(rev, measure(rev, seconds=args.seconds, repeats=args.repeats))
    print("| router | req/s at c=16 | p50 ms at c=1 |\n|---|---|---|")
    for name, rps, p50 in rows:
        ratio = name.startswith("this /")
        print(f"| {name} | {rps:.3f} | {p50:.3f} |" if ratio else f"| {name} | {rps:.0f} | {p50:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
