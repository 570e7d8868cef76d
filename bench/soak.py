"""Memory soak on the embedded default: does RSS come back near idle after large requests?

    python -m bench.soak --minutes N [--arena-max 2] [--quick]

Also the ``soak`` section of ``python -m bench`` (5 minutes; 1 minute and smaller sizes with
``--quick``). A real router on the packaged MiniLM and cross-encoder (two keys, rate limits out
of the way, route timeouts long enough that every request is answered) is started and its RSS
(the process and its children) taken idle after a few one-sentence requests; then, for N
minutes, the mixed load of ``bench.soak_load`` (every kind of large request the caps admit, and
one-sentence requests from another key), RSS sampled every second; then 30 s idle, sampled too
(the router hands freed memory back after 2 s of quiet, at most every 10 s: core/memory.py).

Reports RSS idle before, peak during, after 5 s and 30 s idle (MB and as ratios to idle), what
is anonymous memory and what file-backed (/proc/PID/smaps_rollup), and the router's own log
lines about the memory it returned. ``--arena-max`` sets ``MALLOC_ARENA_MAX`` in the router's
environment (unset otherwise: glibc's default). A benchmark, not a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.report import Section
from bench.soak_load import KEYS, LIGHT, kinds, mixed, summary, warm
from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import ROOT, ServerProcess, base_env, free_port

IDLE_AFTER_S = 30
TRIM_LINE = "freed memory to the system"
MB = 2**20


def _start(work: Path, arena_max: int | None) -> tuple[ServerProcess, str]:
    config = copy_default_configs(work / "config")
    routing = read_yaml(config / "routing.yaml")
    for kind in ("embeddings", "rerank"):
        for route in routing[kind]:
            route["upstream"]["timeout_seconds"] = 600  # answered, however slow the shared machine is
    write_yaml(config / "routing.yaml", routing)
    write_yaml(config / "auth.yaml", {"api_keys": [{"name": n, "key": k} for n, k in KEYS.items()]})
    limits = read_yaml(config / "rate_limits.yaml")
    limits["default"] = {"capacity": 100_000, "refill_rate": 100_000}
    write_yaml(config / "rate_limits.yaml", limits)
    env = base_env(ROUTER_ROUTING_PATH=str(config / "routing.yaml"), ROUTER_AUTH_PATH=str(config / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(config / "rate_limits.yaml"))
    env.pop("MALLOC_ARENA_MAX", None)
    if arena_max:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    port = free_port()
    server = ServerProcess([sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                           env=env, log_path=work / "router.log", cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(url + "/health/ready", timeout=300)
    except Exception:
        server.kill()
        raise
    return server, url


def rss_mb(pid: int) -> float:
    """RSS of the process and its children, MB."""
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / MB


def smaps(pid: int) -> dict[str, float]:
    """Anonymous and file-backed resident MB of the process (Linux; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in text.splitlines()[1:] if "kB" in line}
    return {"anon": fields.get("Anonymous", 0.0), "file": fields.get("Rss", 0.0) - fields.get("Anonymous", 0.0)}


class Sampler:
    """RSS every ``every_s`` in a thread: (seconds since start, MB), with phase marks."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        self.began = time.monotonic()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.began, rss_mb(self.pid)))
            self._stop.wait(self.every_s)

    def now(self) -> float:
        return time.monotonic() - self.began

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> list[float]:
        return [mb for t, mb in self.samples if t0 <= t <= t1]


def soak(minutes: float, *, quick: bool = False, arena_max: int | None = None) -> dict:
    bulk = kinds(quick)
    with tempfile.TemporaryDirectory(prefix="maas-soak-") as tmp:
        server, url = _start(Path(tmp), arena_max)
        pid = server.proc.pid
        try:
            asyncio.run(warm(url))
            time.sleep(3)
            idle, idle_smaps = rss_mb(pid), smaps(pid)
            with Sampler(pid) as sampler:
                asyncio.run(mixed(url, bulk, minutes * 60))
                stopped = sampler.now()
                time.sleep(IDLE_AFTER_S + 1)
            after_smaps = smaps(pid)
            log = server.log_text()
        finally:
            server.stop()
    during = sampler.between(0, stopped)

    def at(seconds: float) -> float:
        return next((mb for t, mb in sampler.samples if t >= stopped + seconds), sampler.samples[-1][1])

    return {"minutes": minutes, "arena_max": arena_max, "idle": idle, "peak": max(during, default=idle),
            "after_5s": at(5), "after_30s": at(IDLE_AFTER_S), "idle_smaps": idle_smaps, "after_smaps": after_smaps,
            "samples": sampler.samples, "stopped": stopped, "kinds": [summary(k) for k in [*bulk, LIGHT]],
            "errors": {k.name: k.errors for k in [*bulk, LIGHT] if k.errors},
            "trims": [line.strip()[:300] for line in log.splitlines() if TRIM_LINE in line]}


def _label(fig: dict) -> str:
    return f"{fig['minutes']:g} min, MALLOC_ARENA_MAX={fig['arena_max'] or 'unset'}"


def section(figures: list[dict], quick: bool) -> Section:
    sec = Section("soak", "Memory soak: RSS idle, under the mixed large-request load, and after it")
    rows = []
    for fig in figures:
        idle = fig["idle"]
        rows.append([_label(fig), idle, fig["peak"], fig["after_5s"], fig["after_30s"],
                     f"{fig['peak'] / idle:.2f} / {fig['after_5s'] / idle:.2f} / {fig['after_30s'] / idle:.2f}",
                     f"{fig['idle_smaps'].get('anon', 0):.0f} → {fig['after_smaps'].get('anon', 0):.0f}",
                     len(fig["trims"])])
    sec.table(["run", "idle MB", "peak MB", "after 5 s idle MB", "after 30 s idle MB",
               "peak / 5 s / 30 s ÷ idle", "anonymous MB idle → 30 s", "trims logged"], rows,
              caption="Sizes about a quarter, one 100k-character rerank document" if quick else "")
    for fig in figures:
        sec.table(["kind", "path", "requests", "statuses", "p50 s", "max s"], fig["kinds"], caption=_label(fig))
        if fig["trims"]:
            sec.notes.append(f"{_label(fig)}: the router's last trim line: `{fig['trims'][-1]}`")
    fig = figures[-1]
    sec.chart("line", "Router RSS under the soak and after it", [round(t) for t, _ in fig["samples"]],
              {"MB": [mb for _, mb in fig["samples"]]}, xlabel="seconds", ylabel="MB")
    sec.target("RSS after 30 s idle / idle before", fig["after_30s"] / fig["idle"], 1.10, lower=True)
    return sec


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    """The ``soak`` section of ``python -m bench``: 5 minutes (1 with ``quick``)."""
    return section([soak(1 if quick else 5, quick=quick)], quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the mixed load runs")
    parser.add_argument("--arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for the router (else unset)")
    parser.add_argument("--quick", action="store_true", help="smaller requests (about a quarter)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    fig = soak(args.minutes, quick=args.quick, arena_max=args.arena_max)
    idle = fig["idle"]
    print(f"== {_label(fig)}")
    for name in ("idle", "peak", "after_5s", "after_30s"):
        print(f"  RSS {name}: {fig[name]:.0f} MB ({fig[name] / idle:.2f}× idle)")
    print(f"  smaps idle: {fig['idle_smaps']}  after 30 s: {fig['after_smaps']}")
    for row in fig["kinds"]:
        print("  " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row))
    for name, errors in fig["errors"].items():
        for status, body in errors.items():
            print(f"  first {status} of {name}: {body}")
    print(f"  trim lines logged: {len(fig['trims'])}")
    for line in fig["trims"]:
        print("   " + line)
    print("  RSS (s, MB): " + " ".join(f"{t:.0f}:{mb:.0f}" for t, mb in fig["samples"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
