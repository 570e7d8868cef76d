"""Quota counters in core's shared-state Redis (``ROUTER_REDIS_URL``, the token buckets' Redis).

One hash per key name and period (``maas:quota:<name>:d2026-12-04``, fields ``t`` tokens and
``r`` requests), expiring a while after its period ends (``periods.KEEP_S``). A charge is one Lua
script run, which Redis executes atomically: replicas racing on a key's last tokens cannot both
have them. Counts survive a restart of Redis only with persistence on (AOF, see OPERATIONS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.exceptions import RedisError

from plugins.rate_limit.quota.periods import Period
from plugins.rate_limit.quota.store import Charge, Counter, Limits, Used
from plugins.rate_limit.redis_store import Outage, connect

# KEYS: one counter per period. ARGV: tokens, requests, then per period its token limit, request
# limit ("" for none) and the Unix time at which the counter may expire.
_CHARGE = """
local tokens = tonumber(ARGV[1])
local requests = tonumber(ARGV[2])
local used = {}
local over = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 't', 'r')
  local t = tonumber(v[1]) or 0
  local r = tonumber(v[2]) or 0
  used[2 * i - 1] = t
  used[2 * i] = r
  local token_limit = tonumber(ARGV[3 * i])
  local request_limit = tonumber(ARGV[3 * i + 1])
  if (token_limit and t + tokens > token_limit) or (request_limit and r + requests > request_limit) then
    over[#over + 1] = i - 1
  end
end
if #over > 0 then
  return {0, over, used}
end
for i = 1, #KEYS do
  used[2 * i - 1] = redis.call('HINCRBY', KEYS[i], 't', tokens)
  used[2 * i] = redis.call('HINCRBY', KEYS[i], 'r', requests)
  redis.call('EXPIREAT', KEYS[i], ARGV[3 * i + 2])
end
return {1, over, used}
"""


def _pairs(flat: Sequence[int | bytes | None]) -> tuple[Used, ...]:
    values = [int(v or 0) for v in flat]
    return tuple(Used(values[i], values[i + 1]) for i in range(0, len(values), 2))


class RedisQuotaStore:
    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "maas:quota:", timeout_s: float = 0.5,
                 cooldown_s: float = 1.0) -> None:
        self._client = connect(url, timeout_s)
        self._script = self._client.register_script(_CHARGE)
        self.prefix = prefix
        self._outage = Outage("quota store", cooldown_s)

    def key(self, name: str, period: Period) -> str:
        return f"{self.prefix}{name}:{period.id}"

    async def charge(self, name: str, periods: Sequence[Period], limits: Sequence[Limits], tokens: int,
                     requests: int) -> Charge:
        self._outage.check()
        args: list[str | int] = [tokens, requests]
        for (token_limit, request_limit), period in zip(limits, periods, strict=True):
            args += ["" if token_limit is None else token_limit, "" if request_limit is None else request_limit,
                     period.expires_at]
        try:
            allowed, over, used = await self._script(keys=[self.key(name, p) for p in periods], args=args)
        except (RedisError, OSError) as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()
        return Charge(bool(allowed), _pairs(used), tuple(int(i) for i in over))

    async def add(self, deltas: Mapping[Counter, Used]) -> None:
        self._outage.check()
        pipe = self._client.pipeline(transaction=False)
        for (name, period), delta in deltas.items():
            key = self.key(name, period)
            pipe.hincrby(key, "t", delta.tokens)
            pipe.hincrby(key, "r", delta.requests)
            pipe.expireat(key, period.expires_at)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()

    async def read(self, name: str, periods: Sequence[Period]) -> list[Used]:
        self._outage.check()
        pipe = self._client.pipeline(transaction=False)
        for period in periods:
            pipe.hmget(self.key(name, period), "t", "r")
        try:
            found = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._outage.failed(exc) from None
        self._outage.ok()
        return [Used(int(t or 0), int(r or 0)) for t, r in found]

    async def close(self) -> None:
        await self._client.aclose()
