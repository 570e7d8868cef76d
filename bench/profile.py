"""The router's hot path under load: py-spy samples at concurrency 16, summed per function.

The router runs with the bench-only in-process ``fixed`` adapter, so every sample is the
router's own work (HTTP server, request chain, JSON, metrics, logs), not an upstream's. The
report lists the functions holding the most samples, by self time and by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import servers
from bench.loadgen import available_tool, http_load
from bench.overhead import BODY, _routing
from bench.report import Section


def _summarise(raw: Path, top: int) -> tuple[list[list], list[list], int]:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        # one row per function, not per line: "fn (path/file.py:123)" -> "fn (path/file.py)"
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)

    def rows(c: Counter[str]) -> list[list]:
        return [[f"`{f}`", 100.0 * n / total] for f, n in c.most_common(top)]
    # inclusive: only our code and the parts of aiohttp/logging it calls into are informative
    ours = Counter({f: n for f, n in incl.items() if "core/" in f or "plugins/" in f or "logging" in f})
    return rows(own), rows(ours), total


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    sec = Section("profile", "Router hot path profile (py-spy, concurrency 16)")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        sec.notes.append("py-spy is not installed (the `bench` extra): no profile taken.")
        return sec
    tool = available_tool(tool)
    seconds = 5 if quick else 15
    raw = work / "profile.txt"
    work.mkdir(parents=True, exist_ok=True)
    with servers.running(servers.router(work, "router-profile", _routing("fixed", None),
                                        launcher=servers.ROUTER_WITH_FIXED_ADAPTER)) as r:
        http_load(tool, r.url + "/v1/embeddings", BODY, concurrency=4, seconds=2)
        proc = subprocess.Popen([spy, "record", "-p", str(r.pid), "-d", str(seconds), "-r", "250", "-f", "raw",
                                 "-o", str(raw), "--nonblocking"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(0.5)
        load = http_load(tool, r.url + "/v1/embeddings", BODY, concurrency=16, seconds=seconds)
        _, err = proc.communicate(timeout=60)
    if not raw.exists():
        sec.notes.append(f"py-spy took no samples: {err.decode(errors='replace')[-300:]}")
        return sec
    own, ours, total = _summarise(raw, 15)
    sec.table(["function (self time)", "% of samples"], own,
              caption=f"{total} samples over {seconds} s at {load.rps:.0f} req/s:")
    sec.table(["router function (inclusive)", "% of samples"], ours)
    sec.notes.append("`StreamWriter._writelines` is the socket send: on loopback the kernel delivers to the "
                     "client inside that call, so it holds the receiver's network stack work too.")
    return sec
