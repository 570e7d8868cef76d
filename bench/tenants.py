"""Item 8: many tenants on one model: the scheduler's fairness, admission and cancellation.

Against the ``paced`` adapter (bench/fixed_adapter.py: a model of fixed capacity that sleeps
``ms_per_input`` per input, one batch of 32 at a time), so what is measured is the scheduler,
not how the load generator and a model share two cores. Every figure is taken side by side in
this run: small requests alone, next to a 2,048-input request, next to a flooding key; after
abandoned bulk requests; open-loop overload at 1.5× and 3× capacity. Then the token-aware
batches on the real MiniLM: a mixed-length stream through the router against the bare model
fed the same stream in arrival order.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import servers
from bench.loadgen import _pct, sentences
from bench.report import Section

MS_PER_INPUT = 4.0
CAPACITY = 1000 / MS_PER_INPUT  # inputs per second
KEYS = {"interactive": "sk-bench-interactive", "bulk": "sk-bench-bulk", "flood": "sk-bench-flood"}
ONE = ["How do I rotate an API key?"]


def _routing() -> dict:
    return {"embeddings": [{"model": "paced", "prompts": "none",
                            "upstream": {"type": "paced", "ms_per_input": MS_PER_INPUT, "timeout_seconds": 30}}]}


@dataclass
class Calls:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    refusal_ms: list[float] = field(default_factory=list)
    refusals_without_retry_after: int = 0
    answered: list[tuple[float, int]] = field(default_factory=list)  # (when, inputs) of each 200
    goodput: float = 0.0

    def add(self, status: int, seconds: float, inputs: int, retry_after: bool) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(seconds)
            self.answered.append((time.perf_counter(), inputs))
        elif status in (429, 503):
            self.refusal_ms.append(seconds * 1000)
            self.refusals_without_retry_after += not retry_after

    def p(self, q: float) -> float:
        return _pct(self.latencies, q) * 1000


async def _post(session: aiohttp.ClientSession, url: str, key: str, inputs: list[str], calls: Calls | None,
                timeout: float | None = None) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url, json={"model": "paced", "input": inputs, "encoding_format": "base64"},
                                headers={"Authorization": f"Bearer {KEYS[key]}"},
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            if calls is not None:
                calls.add(resp.status, time.perf_counter() - started, len(inputs), "Retry-After" in resp.headers)
    except TimeoutError:
        if calls is not None:
            calls.add(0, time.perf_counter() - started, 0, False)


async def _closed(session, url: str, key: str, inputs: list[str], clients: int, until: float, calls: Calls | None):
    async def one() -> None:
        while time.perf_counter() < until:
            await _post(session, url, key, inputs, calls)

    await asyncio.gather(*(one() for _ in range(clients)))


async def _background(session, url: str, key: str, inputs: list[str], clients: int, stop: asyncio.Event):
    async def one() -> None:
        while not stop.is_set():
            await _post(session, url, key, inputs, None)

    await asyncio.gather(*(one() for _ in range(clients)))


async def _beside(session, url: str, seconds: float, key: str | None, inputs: list[str], clients: int) -> Calls:
    """4 interactive clients sending one sentence each, alone or beside ``clients`` of ``key``."""
    calls = Calls()
    stop = asyncio.Event()
    noise = asyncio.ensure_future(_background(session, url, key, inputs, clients, stop)) if key else None
    if noise is not None:
        await asyncio.sleep(0.5)  # the other load is under way
    await _closed(session, url, "interactive", ONE, 4, time.perf_counter() + seconds, calls)
    stop.set()
    if noise is not None:
        await noise
    return calls


async def _abandoned(session, url: str) -> float:
    """Three 2,048-input requests whose clients leave after 0.3 s, then a ping: its latency (ms)."""
    bulk = sentences(2048, seed=3)
    await asyncio.gather(*(_post(session, url, "bulk", bulk, None, timeout=0.3) for _ in range(3)))
    await asyncio.sleep(0.2)
    ping = Calls()
    await _post(session, url, "interactive", ONE, ping)
    return ping.p(0.5)


async def _open_loop(session, url: str, factor: float, seconds: float) -> Calls:
    """Requests of 8 inputs from 4 keys' worth of callers at ``factor`` × capacity, on a schedule."""
    per_request = 8
    rate = factor * CAPACITY / per_request
    calls = Calls()
    texts = sentences(per_request, seed=5)
    began = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_post(session, url, ("interactive", "bulk", "flood")[i % 3], texts, calls)))
    window = (began + 1.0, time.perf_counter())  # the first second fills the queue
    await asyncio.gather(*tasks)
    calls.statuses.setdefault(200, 0)
    # goodput: inputs answered per second while the overload lasted
    done = sum(n for when, n in calls.answered if window[0] <= when <= window[1])
    calls.goodput = done / (window[1] - window[0])
    return calls


async def _multi_tenant(url: str, quick: bool) -> dict:
    seconds = 3 if quick else 8
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _post(session, url + "/v1/embeddings", "interactive", ONE, None)
        api = url + "/v1/embeddings"
        out = {"idle": await _beside(session, api, seconds, None, [], 0),
               "big": await _beside(session, api, seconds, "bulk", sentences(2048, seed=1), 1),
               "flood": await _beside(session, api, seconds, "flood", sentences(64, seed=2), 8)}
        await asyncio.sleep(1.0)
        out["abandoned_ms"] = await _abandoned(session, api)
        await asyncio.sleep(1.0)
        for factor in (1.5, 3.0):
            out[f"open{factor}"] = await _open_loop(session, api, factor, seconds)
            await asyncio.sleep(2.0)
    return out


def _mixed_stream(n: int, seed: int = 17) -> list[str]:
    """Inputs of 5 to 250 tokens, lengths drawn uniformly (MiniLM reads about 1.3 tokens a word)."""
    rng = random.Random(seed)
    words = sentences(n * 8, words=1, seed=seed)
    return [" ".join(rng.choice(words).rstrip(".").lower() for _ in range(rng.randint(4, 190))) for _ in range(n)]


async def _router_stream(url: str, stream: list[str], per_request: int, clients: int) -> float:
    chunks = [stream[i:i + per_request] for i in range(0, len(stream), per_request)]
    queue = list(chunks)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {servers.API_KEY}"}) as session:
        async def one() -> None:
            while queue:
                chunk = queue.pop(0)
                async with session.post(url + "/v1/embeddings", json={"model": "minilm", "input": chunk}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"router answered {resp.status}: {(await resp.read())[:300]!r}")

        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        return len(stream) / (time.perf_counter() - began)


def _bare_stream(stream: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    from core.packaged import packaged_minilm_dir

    model = SentenceTransformer(str(packaged_minilm_dir()), device="cpu", local_files_only=True)
    model.encode(stream[:32], batch_size=32)
    began = time.perf_counter()
    for i in range(0, len(stream), 32):  # arrival order, 32 at a time: each batch padded to its longest
        model.encode(stream[i:i + 32], batch_size=32, show_progress_bar=False)
    return len(stream) / (time.perf_counter() - began)


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    sec = Section("tenants", "8. Many tenants on one model: fairness, admission, cancellation")
    with servers.running(servers.router(work, "router-paced", _routing(), api_keys=list(KEYS.values()),
                                        launcher=servers.ROUTER_WITH_FIXED_ADAPTER)) as r:
        out = asyncio.run(_multi_tenant(r.url, quick))
    idle, big, flood = out["idle"], out["big"], out["flood"]
    sec.table(["4 clients, one sentence each", "p50 ms", "p99 ms", "requests", "non-200"],
              [[label, c.p(0.5), c.p(0.99), sum(c.statuses.values()), sum(v for k, v in c.statuses.items() if k != 200)]
               for label, c in (("alone", idle), ("next to a 2,048-input request (another key)", big),
                                ("next to a flood: 8 clients × 64 inputs (another key)", flood))],
              caption=f"A model of fixed capacity ({CAPACITY:.0f} inputs/s, batches of 32):")
    rows = []
    for factor in (1.5, 3.0):
        c: Calls = out[f"open{factor}"]
        refused = c.statuses.get(429, 0) + c.statuses.get(503, 0)
        rows.append([f"{factor:g}× capacity", sum(c.statuses.values()), c.statuses.get(200, 0), refused,
                     c.p(0.99), max(c.refusal_ms, default=float("nan")), c.goodput / CAPACITY,
                     c.statuses.get(504, 0), c.refusals_without_retry_after,
                     sum(v for k, v in c.statuses.items() if k not in (200, 429, 503))])
    sec.table(["open loop", "sent", "200", "429/503", "admitted p99 ms", "slowest refusal ms", "goodput / capacity",
               "504", "refusals without Retry-After", "other"], rows,
              caption="Requests of 8 inputs on a fixed schedule, from three keys in turn:")
    sec.table(["a ping after three abandoned 2,048-input requests", "ms"], [["latency", out["abandoned_ms"]]])
    stream = _mixed_stream(512 if quick else 2048)
    with servers.running(servers.router(work, "router-minilm", {"embeddings": [
            {"model": "minilm", "served_name": "sentence-transformers/all-MiniLM-L6-v2", "prompts": "none",
             "upstream": {"type": "local", "max_batch_size": 32, "max_wait_ms": 2}}]})) as r:
        asyncio.run(_router_stream(r.url, stream[:64], 64, 1))
        routed = asyncio.run(_router_stream(r.url, stream, 128, 2))
    bare = _bare_stream(stream)
    sec.table(["mixed lengths (5–250 tokens), MiniLM", "inputs/s"],
              [["bare model, batches of 32 in arrival order", bare],
               ["router: requests of 128, batches of similar lengths", routed],
               ["ratio (router / bare)", routed / bare]])
    sec.target("small requests next to a 2,048-input request: p99 ms (goal: max(4 × idle p99, idle p99 + 300))",
               big.p(0.99), max(4 * idle.p(0.99), idle.p(0.99) + 300), lower=True)
    sec.target("another key's p50 during a flood, ms (goal: idle p50 + 250)", flood.p(0.5), idle.p(0.5) + 250,
               lower=True)
    sec.target("a ping after abandoned bulk requests, ms", out["abandoned_ms"], 1000, lower=True)
    for factor in (1.5, 3.0):
        c = out[f"open{factor}"]
        sec.target(f"{factor:g}× overload: slowest refusal, ms", max(c.refusal_ms, default=0.0), 100, lower=True)
        sec.target(f"{factor:g}× overload: goodput / capacity", c.goodput / CAPACITY, 0.9)
        sec.target(f"{factor:g}× overload: 504s and refusals without Retry-After",
                   float(c.statuses.get(504, 0) + c.refusals_without_retry_after), 0, lower=True)
    sec.target("mixed-length stream: router / bare model in arrival order", routed / bare, 1.2)
    sec.notes.append("The model's queue is bounded by the route's `queue_max_seconds` (10 s of estimated work by "
                     "default), so under overload admitted requests wait up to that long; a route for interactive "
                     "traffic can set it lower.")
    return sec
