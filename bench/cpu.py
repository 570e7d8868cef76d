"""``python -m bench.cpu [REV]``: the CPU each server spends on one request under ``hey -c 16``,
the bare aiohttp JSON pass-through, the router at REV and the router at this checkout side by side.

Under that load each of them runs at one core (benchmarks.md §1), so its requests a second are the
inverse of its CPU per request; the CPU time of the server's process over the requests it answered
is steadier than the rate, which also moves with what ``hey`` and the upstream get of the machine.
Runs alternate between the three; medians are printed, with each round's figure.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench import servers
from bench.loadgen import http_load, median
from bench.overhead import BODY, PATH
from bench.versus import _router_at, reference
from tests.support.processes import ROOT


def _cpu(server: servers.Server) -> float:
    times = psutil.Process(server.pid).cpu_times()
    return times.user + times.system


def measure(rev: str, *, seconds: float, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (CPU µs per request of each round, req/s of each round)}``."""
    work = Path(tempfile.mkdtemp(prefix="maas-cpu-"))
    tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    try:
        with ExitStack() as stack:
            up = stack.enter_context(servers.running(servers.fixed_upstream(work)))
            targets = {"aiohttp JSON pass-through": stack.enter_context(servers.running(
                           servers.passthrough(work, up.url, "json"))),
                       f"router at {rev}": stack.enter_context(servers.running(_router_at(tree, work, "base", up.url))),
                       "router, this checkout": stack.enter_context(servers.running(
                           _router_at(ROOT, work, "head", up.url)))}
            out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in targets}
            for server in targets.values():  # warm-up
                http_load("hey", server.url + PATH, BODY, concurrency=4, seconds=1)
            for _ in range(repeats):
                for name, server in targets.items():
                    before = _cpu(server)
                    run = http_load("hey", server.url + PATH, BODY, concurrency=16, seconds=seconds)
                    out[name][0].append((_cpu(server) - before) / max(1.0, run.rps * seconds) * 1e6)
                    out[name][1].append(run.rps)
            return out
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("rev", nargs="?", default=None, help="the router revision beside this checkout "
                        "(default: the newest release tag, else the fixed reference)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args(argv)
    rev = args.rev or reference()
    figures = measure(rev, seconds=args.seconds, repeats=args.repeats)
    floor = median(figures["aiohttp JSON pass-through"][1])
    print("| server | CPU µs per request | req/s | × the pass-through's req/s | CPU µs, each round |")
    print("|---|---|---|---|---|")
    for name, (cpu, rps) in figures.items():
        print(f"| {name} | {median(cpu):.1f} | {median(rps):,.0f} | {median(rps) / floor:.3f} | "
              f"{', '.join(f'{c:.0f}' for c in cpu)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
