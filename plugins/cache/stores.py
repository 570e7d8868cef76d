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
    async def put_many(self, items: Sequence[tuple[bytes, bytes]], owner: str = "") -> None:
        """Store ``items`` for ``owner`` (a cache scope's name): a bounded store shares its room
        fairly between owners."""
        ...
    async def close(self) -> None: ...


class MemoryStore:
    """An LRU of at most ``max_bytes`` of vectors (keys and bookkeeping not counted), fair across
    owners (the cache's scopes: one per API key, anonymous callers, a shared route).

    Each owner's share is the bound over the owners holding entries. When the bound is passed,
    entries go from the owner holding the most, least recent first: that owner is over its share
    (the largest holds more than the average, which is over the share), so an owner within its
    share keeps every entry however much another one writes."""

    kind = "memory"

    def __init__(self, max_bytes: int, events: StoreEvents | None = None) -> None:
        self.max_bytes = max_bytes
        self.events = events
        self.nbytes = 0
        self._owner: dict[bytes, str] = {}  # key -> its owner
        self._entries: dict[str, OrderedDict[bytes, bytes]] = {}  # owner -> its entries, least recent first
        self._held: dict[str, int] = {}  # owner -> bytes of its entries

    def held(self, owner: str) -> int:
        """The bytes ``owner``'s entries take."""
        return self._held.get(owner, 0)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        found: list[bytes | None] = []
        for key in keys:
            owner = self._owner.get(key)
            if owner is None:
                found.append(None)
                continue
            entries = self._entries[owner]
            entries.move_to_end(key)
            found.append(entries[key])
        return found

    async def put_many(self, items: Sequence[tuple[bytes, bytes]], owner: str = "") -> None:
        for key, value in items:
            if len(value) > self.max_bytes:
                continue
            self._drop(key)
            self._entries.setdefault(owner, OrderedDict())[key] = value
            self._owner[key] = owner
            self._held[owner] = self._held.get(owner, 0) + len(value)
            self.nbytes += len(value)
        evicted = 0
        while self.nbytes > self.max_bytes:
            largest = max(self._held, key=self._held.__getitem__)
            key = next(iter(self._entries[largest]))
            self._drop(key)
            evicted += 1
        if self.events is not None:
            if evicted:
                self.events.evicted(evicted)
            self.events.size(self.nbytes)

    def _drop(self, key: bytes) -> None:
        owner = self._owner.pop(key, None)
        if owner is None:
            return
        entries = self._entries[owner]
        size = len(entries.pop(key))
        self.nbytes -= size
        self._held[owner] -= size
        if not entries:
            del self._entries[owner], self._held[owner]

    async def close(self) -> None:
        self._owner.clear()
        self._entries.clear()
        self._held.clear()
        self.nbytes = 0


class RedisStore:
    """Vectors in Redis under ``maas:emb:<key>`` with a TTL: one MGET per lookup, one pipeline per write.

    The owner is already in every key (the cache's scope enters it), and the room is Redis's own
    (``maxmemory`` with ``allkeys-lru``), so no share is kept here."""

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

    async def put_many(self, items: Sequence[tuple[bytes, bytes]], owner: str = "") -> None:
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
