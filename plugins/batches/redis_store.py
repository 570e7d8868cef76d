"""The job store in core's shared Redis (``ROUTER_REDIS_URL``): replicas see the same jobs and
split their chunks by claims, leases a live runner renews (``SET NX PX``; renewed, or taken back
once lapsed if nobody took it, and released only by their holder, in scripts), so a dead replica's
chunk is taken over once its lease lapses.

Keys (prefix ``maas:batch:``): ``job:<id>`` the record (JSON), ``owner:<name>`` the owner's jobs
(sorted set by creation), ``active`` the jobs not yet final (sorted set), ``results:<id>`` each
done chunk's counts (hash), ``runs:<id>`` the run whose parts hold each done chunk's lines (hash,
written with the counts in one script; apart, so a replica of a version before runs reads the
counts as it did), ``claim:<id>:<chunk>`` a lease (its holder).
"""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from plugins.batches.store import FINAL, TERMINAL, Done, Job, Update

_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_DONE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisJobStore:
    def __init__(self, url: str, prefix: str = "maas:batch:") -> None:
        self._r = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
        self.p = prefix
        self._renew = self._r.register_script(_RENEW)
        self._release = self._r.register_script(_RELEASE)
        self._done = self._r.register_script(_DONE)

    def _job(self, batch_id: str) -> str:
        return f"{self.p}job:{batch_id}"

    async def create(self, job: Job) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self._job(job["id"]), orjson.dumps(job))
            pipe.zadd(f"{self.p}owner:{job['owner']}", {job["id"]: job["created_at"]})
            pipe.zadd(f"{self.p}active", {job["id"]: job["created_at"]})
            await pipe.execute()

    async def get(self, batch_id: str) -> Job | None:
        raw = await self._r.get(self._job(batch_id))
        return orjson.loads(raw) if raw is not None else None

    async def update(self, batch_id: str, change: Update) -> Job | None:
        key = self._job(batch_id)
        async with self._r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return None
                    job = orjson.loads(raw)
                    new = change(dict(job))
                    if new is None:
                        await pipe.unwatch()
                        return job
                    pipe.multi()
                    pipe.set(key, orjson.dumps(new))
                    if new["status"] in TERMINAL:
                        pipe.zrem(f"{self.p}active", batch_id)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue

    async def owned(self, owner: str) -> list[Job]:
        ids = await self._r.zrevrange(f"{self.p}owner:{owner}", 0, -1)
        if not ids:
            return []
        raws = await self._r.mget([self._job(str(i)) for i in ids])
        return [orjson.loads(r) for r in raws if r is not None]

    async def active(self) -> list[str]:
        return [str(i) for i in await self._r.zrange(f"{self.p}active", 0, -1)]

    async def remove(self, batch_id: str) -> None:
        job = await self.get(batch_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._job(batch_id), f"{self.p}results:{batch_id}", f"{self.p}runs:{batch_id}")
            pipe.zrem(f"{self.p}active", batch_id)
            if job is not None:
                pipe.zrem(f"{self.p}owner:{job['owner']}", batch_id)
            await pipe.execute()

    async def chunk_done(self, batch_id: str, chunk: int, completed: int, failed: int, run: str) -> bool:
        keys = [f"{self.p}results:{batch_id}", f"{self.p}runs:{batch_id}"]
        return bool(await self._done(keys=keys, args=[str(chunk), f"{completed},{failed}", run]))

    async def results(self, batch_id: str) -> dict[int, Done]:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hgetall(f"{self.p}results:{batch_id}")
            pipe.hgetall(f"{self.p}runs:{batch_id}")
            raw, runs = await pipe.execute()
        out = {}
        for k, v in raw.items():
            done, failed = str(v).split(",")
            out[int(k)] = Done(int(done), int(failed), runs.get(k, ""))  # no run: recorded before runs were named
        return out

    def _claim(self, batch_id: str, chunk: int) -> str:
        return f"{self.p}claim:{batch_id}:{chunk}"

    async def is_done(self, batch_id: str, chunk: int) -> bool:
        return bool(await self._r.hexists(f"{self.p}results:{batch_id}", str(chunk)))

    async def claim(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool:
        key = self._claim(batch_id, chunk)
        if await self._r.set(key, holder, nx=True, px=int(lease_s * 1000)):
            return True
        return bool(await self._renew(keys=[key], args=[holder, int(lease_s * 1000)]))  # already ours

    async def renew(self, batch_id: str, chunk: int, holder: str, lease_s: float) -> bool:
        return bool(await self._renew(keys=[self._claim(batch_id, chunk)], args=[holder, int(lease_s * 1000)]))

    async def release(self, batch_id: str, chunk: int, holder: str) -> None:
        await self._release(keys=[self._claim(batch_id, chunk)], args=[holder])

    async def claimed(self, batch_id: str) -> bool:
        final = self._claim(batch_id, FINAL)
        async for key in self._r.scan_iter(match=f"{self.p}claim:{batch_id}:*", count=500):
            if str(key) != final:
                return True
        return False

    async def close(self) -> None:
        await self._r.aclose()
