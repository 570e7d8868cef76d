"""Bucket state in Redis, so router replicas share one budget per caller.

Each decision is one Lua script run: Redis executes it atomically, so replicas racing on one
bucket cannot both spend its last token. The script reads the clock from Redis (``TIME``), so
replicas with skewed clocks still agree. Idle buckets expire once they would be full again.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from plugins.rate_limit.buckets import Decision, StoreUnavailable

log = logging.getLogger("maas.ratelimit")

# Mirrors buckets.refill() and buckets.decide(); numbers travel as %.17g strings, which
# round-trip doubles exactly (Lua's tostring keeps only 14 digits).
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local s = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(s[1])
local updated = tonumber(s[2])
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now
elseif now <= updated then
  tokens = math.min(capacity, tokens)
else
  tokens = math.min(capacity, tokens + (now - updated) * rate)
  updated = now
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', updated))
if rate > 0 then
  -- capped at a day (buckets.NEVER), so the number stays an integer literal
  redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((capacity - tokens) / rate * 1000), 86400000) + 1000)
else
  redis.call('PERSIST', KEYS[1])
end
return {allowed, string.format('%.17g', tokens)}
"""


def connect(url: str, timeout_s: float) -> aioredis.Redis:
    """A client that gives up fast: one immediate retry covers a pooled connection that Redis
    closed; more retries with backoff (the client's default) would hold every request while Redis
    is down."""
    return aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                             retry=Retry(NoBackoff(), 1))


class Outage:
    """Whether a store's Redis is down: after a failure requests skip it for ``cooldown_s``
    rather than each waiting on it; the failure and the recovery are logged once each."""

    def __init__(self, what: str, cooldown_s: float = 1.0) -> None:
        self.what = what
        self._cooldown_s = cooldown_s
        self._skip_until = 0.0
        self._down = False

    def check(self) -> None:
        if time.monotonic() < self._skip_until:
            raise StoreUnavailable(f"{self.what} unreachable")

    def failed(self, exc: BaseException) -> StoreUnavailable:
        self._skip_until = time.monotonic() + self._cooldown_s
        if not self._down:
            self._down = True
            # The URL may hold a password: name only the error.
            log.error("%s failed: %s: %s", self.what, type(exc).__name__, exc)
        return StoreUnavailable(f"{self.what} unreachable")

    def ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("%s reachable again", self.what)


class RedisBucketStore:
    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "maas:rl:", timeout_s: float = 0.5,
                 cooldown_s: float = 1.0) -> None:
        self._client = connect(url, timeout_s)
        self._script = self._client.register_script(_TAKE)
        self.prefix = prefix
        self._outage = Outage("rate-limit store", cooldown_s)

    async def take(self, key: str, capacity: float, rate: float, cost: float,
                   now: float | None = None) -> Decision:
        self._outage.check()  # right after a failure do not wait on Redis again for every request
        args = [repr(float(capacity)), repr(float(rate)), repr(float(cost)), "" if now is None else repr(float(now))]
        try:
            allowed, tokens = await self._script(keys=[self.prefix + key], args=args)
        except (RedisError, OSError) as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()
        return Decision.of(bool(allowed), float(tokens), capacity, rate, cost)

    async def close(self) -> None:
        await self._client.aclose()
