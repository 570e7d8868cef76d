"""Where jobs live: their records, each chunk's result, and the claims replicas hold on chunks.

Two stores with one interface (``JobStore``): ``LocalJobStore``, a JSON state file beside the
files (one replica: its claims are in memory), and ``plugins.batches.redis_store.RedisJobStore``,
core's shared Redis (``ROUTER_REDIS_URL``), whose claims are leases a live runner renews, so a
dead replica's chunk is taken over once its lease lapses.

A job record is a dict: OpenAI's Batch fields plus ``owner`` (the key name) and ``chunks`` (each
chunk's byte offset and line count in the input file). A chunk's result is its counts
(completed, failed) and the name of the run whose parts hold its lines (``Done``); its output
lines are files (``plugins.batches.jobs``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from core.offload import off_loop
from plugins.batches.files import write_atomic

Job = dict[str, Any]
Update = Callable[[Job], Job | None]  # the new record, or None to leave it as it is
FINAL = -1  # the claim a replica holds while it finalizes a job


class Done(NamedTuple):
    """A done chunk: its counts, and the run whose parts are its lines ("": a part of one name,
    as chunks were written before parts were named by their run)."""

    completed: int
    failed: int
    run: str = ""


class JobStore(Protocol):
    async def create(self, job: Job) -> None: ...
    async def get(self, batch_id: str) -> Job | None: ...
    async def update(self, batch_id: str, change: Update) -> Job | None:
        """Apply ``change`` atomically (against other replicas too); the record after it."""
    async def owned(self, owner: str) -> list[Job]:
        """The owner's jobs, newest first."""
    async def active(self) -> list[str]:
        """Ids of the jobs not yet in a final state, oldest first."""
    async def remove(self, batch_id: str) -> None: ...
    async def chunk_done(self, batch_id: str, chunk: int, completed: int, failed: int, run: str) -> bool:
        """Record the chunk done by ``run`` (whose parts are then its lines), in one write, unless
        it is recorded already (the first record stands); whether this one was recorded."""
    async def results(self, batch_id: str) -> dict[int, Done]: ...
    async def is_done(self, batch_id: str, chunk: int) -> bool: ...
    async def claim(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool: ...
    async def renew(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool:
        """Extend ``holder``'s claim, or take it back if its lease lapsed and nobody took it;
        False when another holds it."""
    async def release(self, batch_id: str, chunk: int, holder: str) -> None: ...
    async def claimed(self, batch_id: str) -> bool:
        """Whether any replica holds a claim on one of the job's chunks."""
    async def close(self) -> None: ...


TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class LocalJobStore:
    """One replica's store: records and results in ``state.json``, rewritten whole (atomically)
    on each change; claims in memory (nothing else can hold one)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "state.json"
        self._jobs: dict[str, Job] = {}
        self._results: dict[str, dict[int, Done]] = {}
        self._claims: dict[tuple[str, int], tuple[str, float]] = {}
        self._lock = asyncio.Lock()
        self._loading: asyncio.Future[None] | None = None

    async def _load(self) -> None:
        """Read the state file once; every caller waits for that one read (a write before it ends
        would replace the file with an empty state)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read())
        await asyncio.shield(self._loading)

    async def _read(self) -> None:
        raw = await off_loop(_read, self.path)
        if raw is not None:
            state = orjson.loads(raw)
            self._jobs = state.get("jobs", {})
            runs = state.get("runs", {})  # kept apart: "results" reads as it did before runs were named
            self._results = {bid: {int(k): Done(v[0], v[1], runs.get(bid, {}).get(k, "")) for k, v in chunks.items()}
                             for bid, chunks in state.get("results", {}).items()}

    async def _save(self) -> None:
        state = {"jobs": self._jobs,
                 "results": {bid: {str(k): [d.completed, d.failed] for k, d in r.items()}
                             for bid, r in self._results.items()},
                 "runs": {bid: {str(k): d.run for k, d in r.items() if d.run} for bid, r in self._results.items()}}
        data = orjson.dumps(state)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await off_loop(write_atomic, self.path, data)

    async def create(self, job: Job) -> None:
        async with self._lock:
            await self._load()
            self._jobs[job["id"]] = job
            await self._save()

    async def get(self, batch_id: str) -> Job | None:
        await self._load()
        job = self._jobs.get(batch_id)
        return dict(job) if job is not None else None

    async def update(self, batch_id: str, change: Update) -> Job | None:
        async with self._lock:
            await self._load()
            job = self._jobs.get(batch_id)
            if job is None:
                return None
            new = change(dict(job))
            if new is not None:
                self._jobs[batch_id] = new
                await self._save()
                return dict(new)
            return dict(job)

    async def owned(self, owner: str) -> list[Job]:
        await self._load()
        jobs = [dict(j) for j in self._jobs.values() if j.get("owner") == owner]
        return sorted(jobs, key=lambda j: (j["created_at"], j["id"]), reverse=True)

    async def active(self) -> list[str]:
        await self._load()
        jobs = [j for j in self._jobs.values() if j["status"] not in TERMINAL]
        return [j["id"] for j in sorted(jobs, key=lambda j: (j["created_at"], j["id"]))]

    async def remove(self, batch_id: str) -> None:
        async with self._lock:
            await self._load()
            self._jobs.pop(batch_id, None)
            self._results.pop(batch_id, None)
            await self._save()

    async def chunk_done(self, batch_id: str, chunk: int, completed: int, failed: int, run: str) -> bool:
        async with self._lock:
            await self._load()
            done = self._results.setdefault(batch_id, {})
            if chunk in done:
                return False
            done[chunk] = Done(completed, failed, run)
            await self._save()
            return True

    async def results(self, batch_id: str) -> dict[int, Done]:
        await self._load()
        return dict(self._results.get(batch_id, {}))

    async def is_done(self, batch_id: str, chunk: int) -> bool:
        await self._load()
        return chunk in self._results.get(batch_id, {})

    async def claim(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool:
        now = time.monotonic()
        held = self._claims.get((batch_id, chunk))
        if held is not None and held[1] > now and held[0] != holder:
            return False
        self._claims[(batch_id, chunk)] = (holder, now + lease_s)
        return True

    async def renew(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool:
        return await self.claim(batch_id, chunk, holder, lease_s)  # ours, or lapsed and free: (re)taken

    async def release(self, batch_id: str, chunk: int, holder: str) -> None:
        if self._claims.get((batch_id, chunk), ("",))[0] == holder:
            del self._claims[(batch_id, chunk)]

    async def claimed(self, batch_id: str) -> bool:
        now = time.monotonic()
        return any(b == batch_id and k != FINAL and until > now for (b, k), (_, until) in self._claims.items())

    async def close(self) -> None:
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
