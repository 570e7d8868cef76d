"""Item 1: gateway overhead against a fixed upstream that answers at once.

Targets, each one process: the upstream itself (Nginx ``return 200``), one Nginx hop, a bare
aiohttp + uvloop pass-through proxy (bytes, and parse + re-serialise), our
router (auth and rate limiting on, over its HTTP adapter), the router with the bench-only
in-process ``fixed`` adapter (its own cost, no upstream hop), and LiteLLM's proxy. Each is
loaded at concurrency 16 (throughput) and 1 (latency), repeats interleaved so drifting
background load hits every target alike; the report shows medians.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from bench import servers
from bench.loadgen import HttpRun, available_tool, http_load, median
from bench.report import Section

BODY = json.dumps({"model": "fixed", "input": "The quick brown fox jumps over the lazy dog"}).encode()
PATH = "/v1/embeddings"
HTTP_ADAPTER = "infinity"  # the OpenAI-style embeddings adapter the router routes the fixed upstream with


def _routing(upstream_type: str, url: str | None) -> dict:
    up: dict = {"type": upstream_type, "timeout_ms": 3000}
    if url:
        up["url"] = url
    return {"embeddings": [{"model": "fixed", "served_name": "fixed", "upstream": up}]}


def start_targets(stack: ExitStack, work: Path, notes: list[str]) -> dict[str, servers.Server]:
    up = stack.enter_context(servers.running(servers.fixed_upstream(work)))
    targets = {"upstream": up,
               "nginx": stack.enter_context(servers.running(servers.nginx_proxy(work, up.url)))}
    for mode in ("raw", "json"):
        targets[f"aiohttp {mode} pass-through"] = stack.enter_context(servers.running(
            servers.passthrough(work, up.url, mode)))
    if HTTP_ADAPTER in servers.adapter_types():
        targets["router"] = stack.enter_context(servers.running(
            servers.router(work, "router-http", _routing(HTTP_ADAPTER, up.url))))
    else:
        notes.append(f"The router row is missing: no `{HTTP_ADAPTER}` adapter is installed in this checkout.")
    targets["router (in-process adapter)"] = stack.enter_context(servers.running(servers.router(
        work, "router-fixed", _routing("fixed", None), launcher=servers.ROUTER_WITH_FIXED_ADAPTER)))
    if servers.has_litellm():
        try:
            targets["litellm"] = stack.enter_context(servers.running(servers.litellm_proxy(work, up.url)))
        except Exception as exc:  # report it, measure the rest
            notes.append(f"LiteLLM did not start: {str(exc).splitlines()[0]}")
    else:
        notes.append("LiteLLM is not installed (.venv-litellm); run scripts/bootstrap.sh bench.")
    return targets


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    tool = available_tool(tool)
    repeats, seconds = (1, 3) if quick else (3, 8)
    notes: list[str] = [f"Load generator: `{tool}`, keep-alive, {seconds} s per run, "
                        f"{repeats} run(s) per target and concurrency, interleaved; medians shown."]
    runs: dict[tuple[str, int], list[HttpRun]] = {}
    with ExitStack() as stack:
        targets = start_targets(stack, work, notes)
        for server in targets.values():  # warm up: connections, caches, lazy imports
            http_load(tool, server.url + PATH, BODY, concurrency=4, seconds=1)
        for _ in range(repeats):
            for conc in (16, 1):
                for name, server in targets.items():
                    secs = seconds if name != "litellm" else max(3, seconds // 2)
                    runs.setdefault((name, conc), []).append(
                        http_load(tool, server.url + PATH, BODY, concurrency=conc, seconds=secs))
    return _section(runs, list(targets), notes)


def _med(runs: list[HttpRun], attr: str) -> float:
    return median([getattr(r, attr) for r in runs])


def _section(runs: dict[tuple[str, int], list[HttpRun]], names: list[str], notes: list[str]) -> Section:
    sec = Section("overhead", "1. Gateway overhead (fixed upstream)", notes=notes)
    nginx16 = _med(runs[("nginx", 16)], "rps")
    up1 = _med(runs[("upstream", 1)], "p50_ms")
    lite16 = _med(runs[("litellm", 16)], "rps") if ("litellm", 16) in runs else None
    rows = []
    for name in names:
        r16, r1 = runs[(name, 16)], runs[(name, 1)]
        rps = _med(r16, "rps")
        errors = sum(r.errors for r in r16 + r1)
        rows.append([name, rps, _med(r16, "p50_ms"), _med(r16, "p99_ms"), rps / nginx16,
                     (rps / lite16) if lite16 else None, _med(r1, "p50_ms"), _med(r1, "p99_ms"),
                     _med(r1, "p50_ms") - up1, errors])
    sec.table(["target", "req/s c16", "p50 ms c16", "p99 ms c16", "× Nginx", "× LiteLLM",
               "p50 ms c1", "p99 ms c1", "added p50 ms c1", "errors"], rows)
    sec.chart("bar", "Requests/s at concurrency 16", [r[0] for r in rows], {"req/s": [r[1] for r in rows]},
              ylabel="req/s", logy=True)
    sec.chart("bar", "Latency added over the upstream, c1 p50", [r[0] for r in rows[1:]],
              {"ms": [r[8] for r in rows[1:]]}, ylabel="ms")
    if ("router", 16) in runs:
        rps = _med(runs[("router", 16)], "rps")
        sec.target("router req/s ≥ 0.15× Nginx (c16)", rps / nginx16, 0.15)
        if lite16:
            sec.target("router req/s ≥ 20× LiteLLM (c16)", rps / lite16, 20)
        sec.target("router added p50 ≤ 1 ms (c1)", _med(runs[("router", 1)], "p50_ms") - up1, 1.0, lower=True)
        if ("aiohttp json pass-through", 16) in runs:
            sec.target("router req/s ≥ 0.75× the aiohttp json pass-through (c16)",
                       rps / _med(runs[("aiohttp json pass-through", 16)], "rps"), 0.75)
        sec.target("router added p50 ≤ 0.4 ms (c1)", _med(runs[("router", 1)], "p50_ms") - up1, 0.4, lower=True)
    return sec
