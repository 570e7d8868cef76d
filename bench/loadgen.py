"""Load generators: hey (or wrk) for fixed-concurrency HTTP load, an asyncio client for model load.

hey and wrk come from Debian. They give requests per second and latency percentiles over a
fixed duration at a fixed concurrency, with keep-alive, as the reference figures were taken.
The asyncio client drives the model benchmarks, where what counts is sentences or pairs per
second, not requests.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench.servers import API_KEY


@dataclass
class HttpRun:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _hey(url: str, body: bytes, concurrency: int, seconds: float, headers: dict[str, str]) -> HttpRun:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        argv = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json",
                "-D", f.name]
        for k, v in headers.items():
            argv += ["-H", f"{k}: {v}"]
        out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    # hey leaves out percentiles it has too few samples for: fall back to the average and slowest
    p50 = re.search(r"50%+ in ([\d.]+) secs", out) or re.search(r"Average:\s+([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out) or re.search(r"Slowest:\s+([\d.]+) secs", out)
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    errors = sum(int(n) for code, n in statuses.items() if code != "200")
    errors += sum(int(n) for n in re.findall(r"\[(\d+)\]\t", out.split("Error distribution:")[-1])) \
        if "Error distribution:" in out else 0
    if not (rps and p50 and p99):
        raise RuntimeError(f"hey gave no figures for {url}:\n{out[-2000:]}")
    return HttpRun(float(rps.group(1)), float(p50.group(1)) * 1000, float(p99.group(1)) * 1000, errors,
                   {k: int(v) for k, v in statuses.items()})


_WRK_LUA = """wrk.method = "POST"
wrk.body = io.open("{body}", "rb"):read("*a")
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def _wrk(url: str, body: bytes, concurrency: int, seconds: float, headers: dict[str, str]) -> HttpRun:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "body.json").write_bytes(body)
        hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        (Path(d) / "post.lua").write_text(_WRK_LUA.format(body=Path(d) / "body.json", headers=hdrs))
        out = subprocess.run(["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s",
                              "-s", str(Path(d) / "post.lua"), url],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"RESULT ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", out)
    if not m:
        raise RuntimeError(f"wrk gave no figures for {url}:\n{out[-2000:]}")
    return HttpRun(float(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4)))


def available_tool(preferred: str = "hey") -> str:
    for tool in (preferred, "hey", "wrk"):
        if shutil.which(tool):
            return tool
    raise RuntimeError("neither hey nor wrk is installed (apt-get install hey wrk)")


def http_load(tool: str, url: str, body: bytes, *, concurrency: int, seconds: float,
              headers: dict[str, str] | None = None) -> HttpRun:
    run = _hey if tool == "hey" else _wrk
    return run(url, body, concurrency, seconds, headers if headers is not None else auth_headers())


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


# --- model load: many small concurrent requests, counted in items (sentences or pairs) ---

_WORDS = ("the of and to in is was for on that with as by at from his her it an were which are this be "
          "has had have not but first new after who they one their its also two been more other time "
          "city during year world state people river music school house water market system model "
          "language search query answer engine retrieval vector server cluster memory latency").split()


def sentences(n: int, words: int = 12, seed: int = 7) -> list[str]:
    """Deterministic English-like sentences (about 1.3 tokens a word for MiniLM's WordPiece)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "." for _ in range(n)]


@dataclass
class ItemRun:
    items_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _drive(url: str, make_body, items_per_request: int, clients: int, seconds: float,
                 headers: dict[str, str]) -> ItemRun:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def client(cid: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, json=make_body(cid, i)) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - began
    ok = len(latencies) - errors
    return ItemRun(ok * items_per_request / elapsed, len(latencies), _pct(latencies, 0.5) * 1000,
                   _pct(latencies, 0.99) * 1000, errors)


def embed_load(url: str, model: str, *, clients: int, per_request: int, seconds: float,
               headers: dict[str, str] | None = None) -> ItemRun:
    pool = sentences(4096)

    def body(cid: int, i: int) -> dict:
        start = (cid * 977 + i * per_request) % (len(pool) - per_request)
        return {"model": model, "input": pool[start:start + per_request]}

    return asyncio.run(_drive(url, body, per_request, clients, seconds, headers or auth_headers()))


def rerank_load(url: str, model: str, *, clients: int, documents: int, seconds: float,
                headers: dict[str, str] | None = None) -> ItemRun:
    pool = sentences(2048, words=24, seed=11)
    queries = sentences(256, words=6, seed=13)

    def body(cid: int, i: int) -> dict:
        start = (cid * 389 + i * documents) % (len(pool) - documents)
        return {"model": model, "query": queries[(cid + i) % len(queries)],
                "documents": pool[start:start + documents]}

    return asyncio.run(_drive(url, body, documents, clients, seconds, headers or auth_headers()))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
