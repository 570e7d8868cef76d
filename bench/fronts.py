"""The three shipped fronts (Nginx, Traefik, Envoy) side by side, each run from its production file.

Failure scenario: three routers behind the front, four kept-alive clients posting embeddings while
one router is SIGKILLed and another restarted with SIGTERM (the tests' scenario); requests sent and
failed per front. Cost: one front, over TLS and over plain HTTP, in front of a fixed upstream that
answers at once (so the front is what is measured), req/s at concurrency 16 and the front's CPU per
request (its process and children, from /proc). The shipped files redirect plain HTTP to HTTPS; the
plain hop runs each front with its HTTP listener serving as the HTTPS one does (``plain=True``). The
fronts run as production configures them (Nginx worker processes, Traefik and Envoy threads), on the
same machine as the load generator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psutil

from bench import servers
from bench.loadgen import available_tool, http_load, median
from bench.report import Section
from tests.support.envoy import envoy_binary, start_envoy
from tests.support.nginx import FrontServer, TestCA, make_test_ca, nginx_binary, start_nginx
from tests.support.traefik import start_traefik, traefik_binary
from tests.support.traffic import echo_routers, kill_one_restart_another, stop_all

KEY = "sk-bench-fronts-1"  # noqa: S105 - a throwaway key for the bench routers
BODY = json.dumps({"model": "fixed", "input": "The quick brown fox jumps over the lazy dog"}).encode()

Starter = Callable[..., FrontServer]  # (prefix, upstreams, ca, plain=False)


def _envoy(prefix: Path, ups: list[str], ca: TestCA, plain: bool = False) -> FrontServer:
    return start_envoy(prefix, [(u.split(":")[0], int(u.split(":")[1])) for u in ups], ca, plain=plain)


def _starters() -> dict[str, Starter]:
    out: dict[str, Starter] = {}
    if nginx_binary():
        out["nginx"] = start_nginx
    if traefik_binary():
        out["traefik"] = start_traefik
    if envoy_binary():
        out["envoy"] = _envoy
    return out


def _cpu_s(pid: int) -> float:
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _failure_scenario(work: Path, name: str, start: Starter, ca: TestCA) -> tuple[int, int, list[str]]:
    import httpx

    base = echo_routers(work, KEY, "bench")
    try:
        front = start(work / "front", [f"127.0.0.1:{p}" for p in base["ports"]], ca)
        try:
            def client() -> httpx.Client:
                return httpx.Client(base_url=front.url, verify=ca.ssl_context(), timeout=30,
                                    headers={"Authorization": f"Bearer {KEY}"})

            load = kill_one_restart_another(base, client, 4)
            return load.sent, len(load.failures), load.failures[:3]
        finally:
            front.stop()
    finally:
        stop_all(base)


def _cost(work: Path, start: Starter, upstream: servers.Server, ca: TestCA, tool: str, seconds: float,
          repeats: int, plain: bool) -> tuple[float, float]:
    front = start(work / "front", [upstream.url.removeprefix("http://")], ca, plain=plain)
    try:
        rps, cpu_us = [], []
        for _ in range(repeats):
            before = _cpu_s(front.process.proc.pid)
            run = http_load(tool, front.url + "/v1/embeddings", BODY, concurrency=16, seconds=seconds)
            used = _cpu_s(front.process.proc.pid) - before
            rps.append(run.rps)
            cpu_us.append(used / max(run.rps * seconds, 1) * 1e6)
        return median(rps), median(cpu_us)
    finally:
        front.stop()


def run(work: Path, *, quick: bool = False, tool: str = "hey") -> Section:
    sec = Section("fronts", "Fronts side by side: Nginx, Traefik, Envoy (the shipped files)")
    starters = _starters()
    missing = sorted({"nginx", "traefik", "envoy"} - set(starters))
    if missing:
        sec.notes.append(f"Not installed here, left out: {', '.join(missing)}.")
    ca = make_test_ca(work / "tls")
    rows = []
    for name, start in starters.items():
        sent, failed, examples = _failure_scenario(work / f"fail-{name}", name, start, ca)
        rows.append([name, sent, failed, "; ".join(examples)[:120]])
    sec.table(["front", "requests sent", "failed", "first failures"], rows,
              "A router SIGKILLed and another restarted (SIGTERM) under 4 kept-alive clients, TLS")
    tool = available_tool(tool)
    seconds, repeats = (3.0, 1) if quick else (8.0, 3)
    cost_rows = []
    upstream = servers.fixed_upstream(work)
    try:
        for name, start in starters.items():
            row: list[object] = [name]
            for plain in (True, False):
                rps, cpu_us = _cost(work / f"cost-{name}-{'plain' if plain else 'tls'}", start, upstream, ca, tool,
                                    seconds, repeats, plain)
                row += [rps, cpu_us]
            cost_rows.append(row)
    finally:
        upstream.stop()
    sec.table(["front", "req/s (c16, plain)", "CPU µs / request (plain)", "req/s (c16, TLS)",
               "CPU µs / request (TLS)"], cost_rows,
              "One hop in front of a fixed upstream (Nginx return 200), keep-alive, plain HTTP and TLS; medians")
    sec.notes.append("The load generator, the fronts and the upstream share this machine's cores: compare the "
                     "fronts with each other, not with another machine. The plain hop is each shipped file with "
                     "its HTTP listener serving instead of redirecting.")
    return sec
