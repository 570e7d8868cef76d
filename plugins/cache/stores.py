"""Where cached vectors live: this process (an LRU bounded in bytes) or Redis (every replica).

Values are the full float32 vector as bytes. A store that fails (Redis down) answers "miss" and
drops the writes: the request is served uncached, never failed; the failure is logged once per
outage and counted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("maas.cache")


def describe(exc: BaseException) -> str:
    """The error's kind and Redis's own words, never the command: redis-py puts a failed pipeline
    command's arguments (the raw vector bytes) in its message, and the URL may hold a password."""
    text = str(exc)
    if "caused error: " in text:
        text = text.split("caused error: ", 1)[1]
    return f"{type(exc).__name__}: {text[:200]!r}"


class StoreEvents(Protocol):
    def evicted(self, n: int) -> None: ...
    def failed(self) -> None: ...
    def size(self, nbytes: int) -> None: ...


class VectorStore(Protocol):
    kind: str

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None: ...
    async def close(self) -> None: ...


class MemoryStore:
    """An LRU of at most ``max_bytes`` of vectors (keys and bookkeeping not counted)."""

    kind = "memory"

    def __init__(self, max_bytes: int, events: StoreEvents | None = None) -> None:
        self.max_bytes = max_bytes
        self.events = events
        self.nbytes = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        found: list[bytes | None] = []
        for key in keys:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            found.append(value)
        return found

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            if len(value) > self.max_bytes:
                continue
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= len(old)
            self._entries[key] = value
            self.nbytes += len(value)
        evicted = 0
        while self.nbytes > self.max_bytes:
            _, value = self._entries.popitem(last=False)
            self.nbytes -= len(value)
            evicted += 1
        if self.events is not None:
            if evicted:
                self.events.evicted(evicted)
            self.events.size(self.nbytes)

    async def close(self) -> None:
        self._entries.clear()
        self.nbytes = 0


class RedisStore:
    """Vectors in Redis under ``maas:emb:<key>`` with a TTL: one MGET per lookup, one pipeline per write."""

    kind = "redis"

    def __init__(self, url: str, *, ttl_s: float, events: StoreEvents | None = None, timeout_s: float = 0.25,
                 cooldown_s: float = 2.0, prefix: bytes = b"maas:emb:") -> None:
        self._client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                         retry=Retry(NoBackoff(), 1))
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.events = events
        self.prefix = prefix
        self._cooldown_s = cooldown_s
        self._skip_until = 0.0  # reads and writes: Redis did not answer
        self._skip_writes_until = 0.0  # writes only: Redis answered, refusing a write (full: OOM)
        self._down = False
        self._refusing = False  # writes refused (logged once until one succeeds)

    def _usable(self, writing: bool = False) -> bool:
        now = time.monotonic()  # right after a failure, do not wait on Redis again
        return now >= self._skip_until and (not writing or now >= self._skip_writes_until)

    def _failed(self, exc: BaseException, writing: bool = False) -> None:
        """A refused write (Redis answered: full, read-only) costs the writes for a while, never the
        reads; a Redis that does not answer costs both."""
        if self.events is not None:
            self.events.failed()
        if writing and isinstance(exc, ResponseError):
            self._skip_writes_until = time.monotonic() + self._cooldown_s
            if not self._refusing:
                self._refusing = True
                log.error("embedding cache store refuses writes, serving without caching: %s", describe(exc))
            return
        self._skip_until = time.monotonic() + self._cooldown_s
        if not self._down:
            self._down = True
            log.error("embedding cache store failed, serving uncached: %s", describe(exc))

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("embedding cache store reachable again")

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys or not self._usable():
            return [None] * len(keys)
        try:
            values = await self._client.mget([self.prefix + k for k in keys])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._ok()
        return [v if isinstance(v, bytes) else None for v in values]

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        if not items or not self._usable(writing=True):
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(self.prefix + key, value, px=self.ttl_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc, writing=True)
            return
        self._refusing = False
        self._ok()

    async def close(self) -> None:
        await self._client.aclose()
