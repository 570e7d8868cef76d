"""One HTTP upstream: its URLs, a connection pool for each, load spreading, failover, cooldown.

Every HTTP adapter (infinity, rerank, qwen3) sends its calls through an ``HttpUpstream``:

* each URL has its own pool of keep-alive connections (``adapters.http.transport``), opened
  on first use and closed in ``close()``; a connection serves request after request;
* each call goes to the URL with the fewest calls in flight, ties taken in turn;
* connection errors and 502/503 answers are retried on another URL (bounded retries,
  exponential backoff with jitter), all inside one deadline, so a request never outlives
  its timeout;
* a URL that fails ``failure_threshold`` times in a row is taken out for
  ``cooldown_seconds``; after that one failure sends it straight back out, one success
  brings it back for good. When every URL is out, one attempt still goes to the URL out
  longest: a lone upstream that came back is found at once, a dead one costs a refused
  connection (a fast 502), not a wait.

Upstream options (routing.yaml, under ``upstream``): ``retries`` (2), ``retry_backoff_ms`` (50),
``failure_threshold`` (3), ``cooldown_seconds`` (10), ``pool_size`` (64 connections),
``max_response_mb`` (64: a larger answer is a 502, not an exhausted router).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from adapters.http.connection import BadResponse, ConnectionFailed, ResponseTooLarge
from adapters.http.errors import error_from_response
from adapters.http.transport import ConnectionPool
from core import deadlines
from core.errors import ConfigError, GatewayError, UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from core.adapters import AdapterContext
    from core.config import UpstreamConfig
    from core.metric_series import CounterCell, HistogramCell

log = logging.getLogger("maas.upstream")

_RETRY_STATUSES = frozenset({502, 503})
_MAX_BACKOFF_S = 1.0
_KEEPALIVE_S = 30.0  # an idle connection older than this is closed, not reused


def public_url(url: str) -> str:
    """The URL without any user:password part: safe for logs and metric labels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(slots=True)
class Endpoint:
    url: str
    label: str
    pool: ConnectionPool
    inflight: int = 0
    failures: int = 0  # consecutive
    down_until: float = 0.0


class _Retryable(Exception):
    def __init__(self, error: GatewayError) -> None:
        self.error = error


class HttpUpstream:
    def __init__(self, upstream: UpstreamConfig, options: Mapping[str, Any], context: AdapterContext, *,
                 adapter: str, headers: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        """``options`` are the upstream's, checked and defaulted (``resilience_options``)."""
        if not upstream.urls:
            raise ConfigError(f"upstream type {adapter!r} needs 'url' or 'urls'")
        self.adapter = adapter
        self.timeout_s = upstream.timeout_s or context.settings.request_timeout_s
        self.retries = int(options["retries"])
        self.backoff_s = float(options["retry_backoff_ms"]) / 1000.0
        self.failure_threshold = int(options["failure_threshold"])
        self.cooldown_s = float(options["cooldown_seconds"])
        self.pool_size = int(options["pool_size"])
        self.max_response_bytes = int(float(options["max_response_mb"]) * 1024 * 1024)
        self.endpoints = [Endpoint(url, public_url(url), self._pool(url, headers)) for url in upstream.urls]
        self.metrics = context.metrics
        self._secrets = tuple(s for s in secrets if s)
        # (url label, outcome) -> metric children
        self._series: dict[tuple[str, str], tuple[CounterCell, HistogramCell]] = {}
        self._turn = 0
        for e in self.endpoints:
            self._set_up(e, True)

    def _set_up(self, endpoint: Endpoint, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.upstream_up.labels(adapter=self.adapter, upstream=endpoint.label).set(1 if up else 0)

    def _pool(self, url: str, headers: Mapping[str, str] | None) -> ConnectionPool:
        try:
            return ConnectionPool(url, limit=self.pool_size, keepalive_s=_KEEPALIVE_S,
                                  headers={"Content-Type": "application/json", **(headers or {})})
        except ValueError as exc:
            raise ConfigError(f"upstream type {self.adapter!r}: {exc}") from None

    def pick(self, tried: set[str]) -> Endpoint:
        """The URL for the next attempt (see the module docstring for the rules)."""
        if len(self.endpoints) == 1:  # the rules pick the one URL, in rotation or not
            return self.endpoints[0]
        now = time.monotonic()
        healthy = [e for e in self.endpoints if e.down_until <= now]
        candidates = [e for e in healthy if e.url not in tried] or healthy
        if not candidates:
            return min(self.endpoints, key=lambda e: e.down_until)
        self._turn += 1
        start = self._turn % len(candidates)
        return min(candidates[start:] + candidates[:start], key=lambda e: e.inflight)

    async def post_json(self, path: str, payload: Any, *, alias: str, request_id: str | None = None) -> Any:
        """POST ``payload`` as JSON to ``path`` on one of the URLs; return the parsed JSON answer."""
        deadline = time.monotonic() + self.timeout_s
        data = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = {"X-Request-ID": request_id} if request_id else None
        tried: set[str] = set()
        error: GatewayError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
                if time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
            endpoint = self.pick(tried)
            probing = endpoint.down_until > time.monotonic()
            tried.add(endpoint.url)
            try:
                return await self._attempt(endpoint, path, data, headers, deadline, alias)
            except _Retryable as exc:
                error = exc.error
                if probing:
                    break
        raise error or UpstreamError(f"The upstream for '{alias}' was not tried within its timeout")

    async def _attempt(self, endpoint: Endpoint, path: str, data: bytes, headers: dict[str, str] | None,
                       deadline: float, alias: str) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout(f"The upstream for '{alias}' did not answer within {self.timeout_s:g} s")
        started = time.perf_counter()
        endpoint.inflight += 1
        try:
            with deadlines.timeout(remaining):
                answer = await endpoint.pool.post(path, data, headers, max_bytes=self.max_response_bytes)
        except TimeoutError:
            self._record(endpoint, "timeout", started, failed=True)
            raise UpstreamTimeout(f"The upstream for '{alias}' did not answer within {self.timeout_s:g} s") from None
        except ConnectionFailed as exc:  # refused, reset, closed mid-answer: try another URL
            self._record(endpoint, "connect_error", started, failed=True, reason=str(exc))
            raise _Retryable(UpstreamError(f"The upstream for '{alias}' is unreachable")) from None
        except BadResponse as exc:
            self._record(endpoint, "bad_response", started, failed=True, reason=str(exc))
            raise UpstreamError(f"The upstream for '{alias}' sent an invalid HTTP response") from None
        except ResponseTooLarge:
            self._record(endpoint, "bad_response", started, failed=True, reason="answer too large")
            raise UpstreamError(f"The upstream for '{alias}' sent an answer over {self.max_response_bytes} bytes",
                                code="upstream_bad_response") from None
        finally:
            endpoint.inflight -= 1
        status, body = answer.status, answer.body
        if 200 <= status < 300:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._record(endpoint, "bad_response", started, failed=True, reason="malformed JSON")
                raise UpstreamError(f"The upstream for '{alias}' sent malformed JSON") from None
            self._record(endpoint, "ok", started, failed=False)
            return parsed
        self._record(endpoint, f"http_{status // 100}xx", started, failed=status >= 500, reason=f"HTTP {status}")
        error = error_from_response(status, body, answer.headers, alias=alias, secrets=self._secrets)
        if status in _RETRY_STATUSES:
            raise _Retryable(error)
        raise error

    def _record(self, endpoint: Endpoint, outcome: str, started: float, *, failed: bool,
                reason: str | None = None) -> None:
        if self.metrics is not None:
            series = self._series.get((endpoint.label, outcome))
            if series is None:  # label lookups cost more than the update: do them once per series
                series = self._series[(endpoint.label, outcome)] = (
                    self.metrics.upstream_requests.labels(adapter=self.adapter, upstream=endpoint.label,
                                                          outcome=outcome),
                    self.metrics.upstream_latency.labels(adapter=self.adapter, upstream=endpoint.label))
            series[0].value += 1  # the counter cell's ``inc``, inline: on every call
            series[1].observe(time.perf_counter() - started)
        if not failed:
            if endpoint.failures >= self.failure_threshold:
                log.info("upstream back in rotation", extra={"adapter": self.adapter, "upstream": endpoint.label})
                self._set_up(endpoint, True)
            endpoint.failures = 0
            endpoint.down_until = 0.0
            return
        endpoint.failures += 1
        log.warning("upstream call failed: %s", reason or outcome,
                    extra={"adapter": self.adapter, "upstream": endpoint.label, "failures": endpoint.failures})
        if endpoint.failures >= self.failure_threshold:
            endpoint.down_until = time.monotonic() + self.cooldown_s
            self._set_up(endpoint, False)
            if endpoint.failures == self.failure_threshold:
                log.warning("upstream out of rotation for %g s", self.cooldown_s,
                            extra={"adapter": self.adapter, "upstream": endpoint.label})

    async def close(self) -> None:
        for e in self.endpoints:
            await e.pool.close()
        if self.metrics is not None:
            for e in self.endpoints:
                try:
                    self.metrics.upstream_up.remove(self.adapter, e.label)
                except KeyError:
                    pass
