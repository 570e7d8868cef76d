"""Item 9: the embedding cache (flag ``embedding_cache``) on a re-indexing job.

A corpus of 10,000 documents is indexed through the router to Infinity (the packaged MiniLM), then
indexed again with 30 % of it replaced by new documents, as a nightly re-index does; once without
the cache and once with it, side by side. Upstream calls and inputs are the router's own counts
(``maas_upstream_requests_total``, ``maas_cache_misses_total``).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench import servers
from bench.loadgen import sentences
from bench.report import Section

PER_REQUEST = 64
CLIENTS = 4


def _routing(url: str, flags: list[str]) -> dict:
    return {"feature_flags": flags,
            "embeddings": [{"model": "m", "served_name": "minilm", "prompts": "none",
                            "upstream": {"type": "infinity", "url": url, "timeout_ms": 120000}}]}


def _corpora(n: int) -> tuple[list[str], list[str]]:
    first = sentences(n, words=24, seed=21)
    fresh = sentences(int(n * 0.3), words=24, seed=22)
    second = first[:n - len(fresh)] + fresh  # 70 % unchanged, 30 % new
    return first, second


async def _index(url: str, corpus: list[str]) -> float:
    chunks = [corpus[i:i + PER_REQUEST] for i in range(0, len(corpus), PER_REQUEST)]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {servers.API_KEY}"}) as session:
        async def client() -> None:
            while chunks:
                chunk = chunks.pop(0)
                async with session.post(url + "/v1/embeddings", json={"model": "m", "input": chunk,
                                                                      "encoding_format": "base64"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"router answered {resp.status}")

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return time.perf_counter() - began


def _counter(url: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*{labels}[^}}]*}} (\S+)$", text, re.M))


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    sec = Section("cache", "9. Embedding cache: re-indexing a corpus with 30 % new documents")
    if not servers.has_infinity():
        sec.notes.append("Not measured: no Infinity here (scripts/bootstrap.sh test installs .venv-infinity).")
        return sec
    n = 2000 if quick else 10_000
    first, second = _corpora(n)
    rows, seconds = [], {}
    with servers.running(servers.infinity(work, "minilm")) as inf:
        for label, flags in (("off", []), ("on", ["embedding_cache"])):
            with servers.running(servers.router(work, f"router-cache-{label}", _routing(inf.url, flags))) as r:
                asyncio.run(_index(r.url, sentences(64, seed=99)))  # warm-up, outside both corpora
                for run_name, corpus in (("first index", first), ("re-index, 30 % new", second)):
                    calls = _counter(r.url, "maas_upstream_requests_total", 'outcome="ok"')
                    misses = _counter(r.url, "maas_cache_misses_total")
                    took = asyncio.run(_index(r.url, corpus))
                    sent = (_counter(r.url, "maas_cache_misses_total") - misses) if flags else len(corpus)
                    calls = _counter(r.url, "maas_upstream_requests_total", 'outcome="ok"') - calls
                    seconds[(label, run_name)] = took
                    rows.append([f"cache {label}: {run_name}", len(corpus), took, len(corpus) / took,
                                 int(calls), int(sent)])
    sec.table(["run", "documents", "seconds", "documents/s", "upstream calls", "inputs sent upstream"], rows,
              caption=f"{CLIENTS} clients, {PER_REQUEST} documents a request, router → Infinity (MiniLM, CPU):")
    off, on = seconds[("off", "re-index, 30 % new")], seconds[("on", "re-index, 30 % new")]
    sec.table(["re-index time, cache off / on"], [[off / on]])
    sec.target("re-index with the cache: speed-up over no cache", off / on, 2.0)
    return sec
