"""Item 4: request coalescing (flag ``coalesce_embeddings``) on and off, same load, same upstream.

Many concurrent one-sentence requests for one HTTP-upstream model. Against the fast upstream
(bench/echo_upstream.py, n vectors for n inputs) the gain is the router's own saving on upstream
calls, counted at the upstream; against Infinity it is what fewer, fuller model batches give.
Both need the router's ``infinity`` adapter (OpenAI-style embeddings over HTTP).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from bench import servers
from bench.loadgen import available_tool, embed_load, http_load, median
from bench.report import Section

FLAG = "coalesce_embeddings"
BODY = json.dumps({"model": "m", "input": ["The quick brown fox jumps over the lazy dog"]}).encode()


def _routing(url: str, flags: list[str]) -> dict:
    return {"feature_flags": flags,
            "embeddings": [{"model": "m", "served_name": "minilm",
                            "upstream": {"type": "infinity", "url": url, "timeout_ms": 60000},
                            "options": {"coalesce_wait_ms": 2, "coalesce_max_batch": 64}}]}


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=5) as resp:
        return json.loads(resp.read())


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    sec = Section("coalesce", "4. Request coalescing (flag `coalesce_embeddings`)")
    if "infinity" not in servers.adapter_types():
        sec.notes.append("Not measured: the router has no `infinity` adapter in this checkout, and coalescing "
                         "is measured over an HTTP upstream.")
        return sec
    tool = available_tool(tool)
    repeats, seconds = (1, 3) if quick else (3, 8)
    rows, chart = [], {}
    with servers.running(servers.echo_upstream(work)) as up:
        for label, flags in (("off", []), ("on", [FLAG])):
            with servers.running(servers.router(work, f"router-echo-{label}", _routing(up.url, flags))) as r:
                http_load(tool, r.url + "/v1/embeddings", BODY, concurrency=16, seconds=1)
                before = _stats(up.url)
                runs = [http_load(tool, r.url + "/v1/embeddings", BODY, concurrency=16, seconds=seconds)
                        for _ in range(repeats)]
                after = _stats(up.url)
            served = sum(sum(v for k, v in x.statuses.items() if k == "200") for x in runs)
            calls = after["calls"] - before["calls"]
            rps = median([x.rps for x in runs])
            chart[f"fast upstream, {label}"] = rps
            rows.append([f"fast upstream, coalescing {label}", rps, median([x.p50_ms for x in runs]),
                         median([x.p99_ms for x in runs]), (served / calls) if calls else None,
                         sum(x.errors for x in runs)])
    if servers.has_infinity():
        with servers.running(servers.infinity(work, "minilm")) as inf:
            for label, flags in (("off", []), ("on", [FLAG])):
                with servers.running(servers.router(work, f"router-inf-{label}", _routing(inf.url, flags))) as r:
                    embed_load(r.url + "/v1/embeddings", "m", clients=16, per_request=1, seconds=2)
                    runs = [embed_load(r.url + "/v1/embeddings", "m", clients=16, per_request=1, seconds=seconds)
                            for _ in range(repeats)]
                v = median([x.items_per_s for x in runs])
                chart[f"Infinity, {label}"] = v
                rows.append([f"Infinity, coalescing {label}", v, median([x.p50_ms for x in runs]),
                             median([x.p99_ms for x in runs]), None, sum(x.errors for x in runs)])
    sec.table(["router → upstream", "req/s", "p50 ms", "p99 ms", "requests per upstream call", "errors"], rows,
              caption="16 concurrent clients, one sentence per request; coalescing waits at most 2 ms:")
    for upstream in ("fast upstream", "Infinity"):
        off, on = chart.get(f"{upstream}, off"), chart.get(f"{upstream}, on")
        if off and on:
            sec.table([f"{upstream}: gain (on / off)"], [[on / off]])
    sec.notes.append("Coalescing saves the upstream's cost per call (a round trip, a forward pass on a small "
                     "batch). It gains where that cost is real work, as with Infinity; against an upstream "
                     "that answers at once, one call more or less costs the router about as much as merging.")
    sec.chart("bar", "Coalescing off / on (req/s)", list(chart), {"req/s": list(chart.values())}, ylabel="req/s",
              logy=True)
    return sec
