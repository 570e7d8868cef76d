"""Item 6: router memory before and after a sustained load (5 minutes; 30 s with --quick).

Load at concurrency 16 on the cheapest path (so the most requests go through: a leak per
request shows soonest), with a trickle of bad requests alongside so error paths run too. RSS
is sampled every 2 s; growth is measured from the end of warm-up to the end.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from bench import servers
from bench.growth import PeakRss
from bench.loadgen import HttpRun, available_tool, http_load
from bench.overhead import BODY, HTTP_ADAPTER, _routing
from bench.report import Section

BAD_BODY = json.dumps({"model": "fixed", "input": [1.5, "x"]}).encode()  # 400 every time


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    tool = available_tool(tool)
    duration, warmup = (30, 10) if quick else (300, 60)
    sec = Section("memory", f"6. Router memory under {duration} s of load")
    with servers.running(servers.fixed_upstream(work)) as up:
        if HTTP_ADAPTER in servers.adapter_types():
            router, path = servers.router(work, "router-memory", _routing(HTTP_ADAPTER, up.url)), "HTTP adapter"
        else:
            router = servers.router(work, "router-memory", _routing("fixed", None),
                                    launcher=servers.ROUTER_WITH_FIXED_ADAPTER)
            path = "in-process bench adapter (no `infinity` adapter in this checkout)"
        with servers.running(router):
            rss = PeakRss(router.pid)
            start = rss.current()
            results: dict[str, HttpRun] = {}

            def load(name: str, body: bytes, conc: int) -> None:
                results[name] = http_load(tool, router.url + "/v1/embeddings", body, concurrency=conc,
                                          seconds=duration)

            threads = [threading.Thread(target=load, args=("good", BODY, 16)),
                       threading.Thread(target=load, args=("bad", BAD_BODY, 1))]
            began = time.monotonic()
            for t in threads:
                t.start()
            samples: list[tuple[float, float]] = []
            while any(t.is_alive() for t in threads):
                samples.append((time.monotonic() - began, rss.current() / 2**20))
                time.sleep(2)
            for t in threads:
                t.join()
            end = rss.current() / 2**20
    warm = next((mib for t, mib in samples if t >= warmup), samples[-1][1])
    growth = (end - warm) / warm
    good, bad = results["good"], results["bad"]
    sec.table(["path", "RSS at start MiB", f"after {warmup} s warm-up", "at end", "growth after warm-up",
               "good req/s", "bad-request 4xx"],
              [[path, start / 2**20, warm, end, f"{growth * 100:+.2f}%", good.rps,
                sum(v for k, v in bad.statuses.items() if k.startswith("4"))]])
    sec.chart("line", "Router RSS under load", [round(t) for t, _ in samples], {"MiB": [m for _, m in samples]},
              xlabel="seconds", ylabel="MiB")
    sec.target("router RSS growth after warm-up ≤ 5%", growth * 100, 5.0, lower=True)
    return sec
