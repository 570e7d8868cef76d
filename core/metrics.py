"""Prometheus metrics. Labels carry model aliases, key *names* and upstream URLs, never keys.

The series every request moves are ``core.metric_series``'s (plain counts on the event loop, read
per scrape); the rest are ``prometheus_client``'s own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.metric_series import CounterCell, HistogramCell, LoopCounter, LoopGauge, LoopHistogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_RATIO_BUCKETS = (0.25, 0.5, 0.67, 0.8, 0.9, 1.1, 1.25, 1.5, 2, 4)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = LoopCounter("maas_requests_total", "HTTP API requests by endpoint, model and status",
                                ["endpoint", "model", "status"], registry=r)
        self.latency = LoopHistogram("maas_request_duration_seconds", "Request latency",
                                 ["endpoint", "model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = LoopCounter("maas_tokens_total", "Prompt tokens processed", ["endpoint", "model"], registry=r)
        self.inputs = LoopCounter("maas_inputs_total", "Inputs embedded or documents reranked",
                              ["endpoint", "model"], registry=r)
        self.inflight = LoopGauge("maas_inflight_requests", "Requests being processed", registry=r)
        self.rate_limited = Counter("maas_rate_limited_total", "Requests rejected by rate limiting",
                                    ["caller", "reason"], registry=r)
        self.rate_limit_store_errors = Counter(
            "maas_rate_limit_store_errors_total",
            "Rate-limit decisions the store (Redis) could not make, by what happened to the request",
            ["store", "outcome"], registry=r)
        self.auth_failures = Counter("maas_auth_failures_total", "Requests rejected by auth",
                                     ["reason"], registry=r)
        self.upstream_requests = LoopCounter("maas_upstream_requests_total", "Calls to upstreams by outcome",
                                         ["adapter", "upstream", "outcome"], registry=r)
        self.upstream_latency = LoopHistogram("maas_upstream_duration_seconds", "Upstream call latency",
                                          ["adapter", "upstream"], buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_up = Gauge("maas_upstream_healthy", "1 while an upstream URL is in rotation",
                                 ["adapter", "upstream"], registry=r)
        self.batch_size = LoopHistogram("maas_batch_size", "Items per batch the scheduler sends a model",
                                    ["queue"], buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("maas_queue_depth", "Inputs waiting for a model", ["queue"], registry=r)
        self.queue_wait = LoopHistogram("maas_queue_wait_seconds", "How long a request waited for its first batch",
                                    ["queue"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_refused = Counter("maas_queue_refused_total",
                                     "Requests refused at admission, by reason (key_bound, key_share, saturated, "
                                     "deadline, too_large)", ["queue", "reason"], registry=r)
        self.batch_fixed = Gauge("maas_model_batch_fixed_seconds", "The model's fitted fixed cost of one call "
                                 "(batch time = fixed + per token × padded tokens)", ["queue"], registry=r)
        self.batch_per_token = Gauge("maas_model_batch_token_seconds", "The model's fitted cost of one padded "
                                     "token in a batch", ["queue"], registry=r)
        self.batch_seconds = LoopHistogram("maas_batch_duration_seconds", "Measured time of each batch or call",
                                       ["queue"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_estimate = LoopHistogram("maas_batch_estimate_ratio", "Each batch's measured time over the "
                                        "capacity model's estimate of it just before (1: exact)", ["queue"],
                                        buckets=_RATIO_BUCKETS, registry=r)
        self.queue_cancelled = Counter("maas_queue_cancelled_inputs_total",
                                       "Queued inputs dropped because their caller stopped waiting", ["queue"],
                                       registry=r)
        self.cache_hits = Counter("maas_cache_hits_total", "Embedding inputs served from the cache", ["model"],
                                  registry=r)
        self.cache_misses = Counter("maas_cache_misses_total", "Embedding inputs the cache did not hold", ["model"],
                                    registry=r)
        self.cache_tokens = Counter("maas_cache_tokens_total", "Prompt tokens of inputs served from the cache",
                                    ["model"], registry=r)
        self.cache_bytes = Gauge("maas_cache_bytes", "Bytes of vectors in the in-process cache", registry=r)
        self.cache_evictions = Counter("maas_cache_evictions_total", "Vectors evicted from the in-process cache",
                                       registry=r)
        self.cache_store_errors = Counter("maas_cache_store_errors_total",
                                          "Cache store calls that failed (the request was served uncached)",
                                          registry=r)
        self.usage_requests = LoopCounter("maas_usage_requests_total", "Answered requests by key name and model",
                                      ["key", "model"], registry=r)
        self.usage_inputs = LoopCounter("maas_usage_inputs_total", "Inputs embedded or documents reranked, by key name "
                                    "and model", ["key", "model"], registry=r)
        self.usage_tokens = LoopCounter("maas_usage_tokens_total", "Prompt tokens by key name and model",
                                    ["key", "model"], registry=r)
        self.reloads = Counter("maas_config_reloads_total", "Config reload attempts by result",
                               ["result"], registry=r)
        for result in ("success", "error"):  # exported from the start: a rate over them needs a 0
            self.reloads.labels(result=result)
        self.config_info = Gauge("maas_config_info", "The loaded config snapshot (value 1)",
                                 ["digest"], registry=r)
        self.config_loaded_at = Gauge("maas_config_loaded_timestamp_seconds",
                                      "When the serving config snapshot was loaded", registry=r)
        self.loop_lag = Gauge("maas_event_loop_lag_seconds",
                              "The event loop's worst lag of the last 30 s: how late a timer fired because the "
                              "loop was busy (health checks and every request wait that long)", registry=r)
        self._request_children: dict[tuple[str, str, int], tuple[CounterCell, HistogramCell]] = {}
        self._ok_children: dict[tuple[str, str], tuple[CounterCell, CounterCell]] = {}
        self._usage_children: dict[tuple[str, str], tuple[CounterCell, CounterCell, CounterCell]] = {}

    def usage(self, key: str, model: str, inputs: int, tokens: int | None) -> None:
        """Count one answered request for charge-back: by key *name* ("anonymous" for callers without one)."""
        series = self._usage_children.get((key, model))
        if series is None:
            series = self._usage_children[(key, model)] = (
                self.usage_requests.labels(key=key, model=model), self.usage_inputs.labels(key=key, model=model),
                self.usage_tokens.labels(key=key, model=model))
        series[0].value += 1  # the cells' ``inc``, inline: this runs on every request
        series[1].value += inputs
        if tokens:
            series[2].value += tokens

    def queue_observer(self, queue: str) -> QueueSeries:
        return QueueSeries(self, queue)

    def cache_events(self) -> CacheEvents:
        return CacheEvents(self)

    def request_done(self, endpoint: str, model: str, status: int, seconds: float, tokens: int | None,
                     inputs: int) -> None:
        """Count one finished API request.

        The labelled children are cached: ``labels()`` takes a lock and builds a key on every
        call, which showed in the profile of the request path. Label values are bounded (model
        aliases, "unknown", status codes), so the caches are too.
        """
        key = (endpoint, model, status)
        pair = self._request_children.get(key)
        if pair is None:
            pair = self._request_children[key] = (
                self.requests.labels(endpoint=endpoint, model=model, status=str(status)),
                self.latency.labels(endpoint=endpoint, model=model))
        pair[0].value += 1  # the cell's ``inc``, inline: this runs on every request
        pair[1].observe(seconds)
        if status == 200:
            ok = self._ok_children.get(key[:2])
            if ok is None:
                ok = self._ok_children[key[:2]] = (self.tokens.labels(endpoint=endpoint, model=model),
                                                   self.inputs.labels(endpoint=endpoint, model=model))
            if tokens:
                ok[0].value += tokens
            ok[1].value += inputs

    def config_swapped(self, digest: str, loaded_at: float) -> None:
        self.config_info.clear()
        self.config_info.labels(digest=digest).set(1)
        self.config_loaded_at.set(loaded_at)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class QueueSeries:
    """One model queue's metrics (a ``core.scheduling.QueueObserver``)."""

    def __init__(self, metrics: GatewayMetrics, queue: str) -> None:
        self._depth = metrics.queue_depth.labels(queue=queue)
        self._wait = metrics.queue_wait.labels(queue=queue)
        self._batch = metrics.batch_size.labels(queue=queue)
        self._cancelled = metrics.queue_cancelled.labels(queue=queue)
        self._refused = metrics.queue_refused
        self._queue = queue
        # The fitted costs change after every call and are read at scrape time, not set per call.
        self._fit = (0.0, 0.0)
        metrics.batch_fixed.labels(queue=queue).set_function(lambda: self._fit[0])
        metrics.batch_per_token.labels(queue=queue).set_function(lambda: self._fit[1])
        self._seconds = metrics.batch_seconds.labels(queue=queue)
        self._estimate = metrics.batch_estimate.labels(queue=queue)

    def depth(self, items: int) -> None:
        self._depth.set(items)

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def batch(self, items: int) -> None:
        self._batch.observe(items)

    def refused(self, reason: str) -> None:
        self._refused.labels(queue=self._queue, reason=reason).inc()

    def cancelled(self, items: int) -> None:
        self._cancelled.inc(items)

    def capacity(self, fixed: float, per_token: float, seconds: float, estimated: float | None) -> None:
        self._fit = (fixed, per_token)
        self._seconds.observe(seconds)
        if estimated:
            self._estimate.observe(seconds / estimated)


class CacheEvents:
    """The cache store's metrics (a ``core.cache.stores.StoreEvents``)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def evicted(self, n: int) -> None:
        self.metrics.cache_evictions.inc(n)

    def failed(self) -> None:
        self.metrics.cache_store_errors.inc()

    def size(self, nbytes: int) -> None:
        self.metrics.cache_bytes.set(nbytes)
