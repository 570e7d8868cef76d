"""The rerank service (port 9002): a cross-encoder in its own process, with dynamic batching.

Same contract as the router's ``/v1/rerank``. Configured by the RERANK_* variables:
model and aliases, request limits, batch size and delay, queue timeout, device and precision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from adapters.local.models import load_reranker
from core.config.settings import bool_env, number
from core.dialects import ParseLimits
from core.dialects.fields import FieldTable
from core.dialects.openai import GuideRerank
from core.dialects.vllm import RERANK_EXTRAS
from core.errors import ConfigError, InvalidRequest, ModelNotFound, ServiceUnavailable
from core.http import edge_middleware, json_response
from core.packaged import DEFAULT_RERANKER, check_device
from core.requests import RerankOutcome, RerankRequest, rank
from core.scheduling import Scheduler, Work
from core.serving import DRAIN, Drain, serve_until_stopped
from core.tokenization import TokenCounter, counter_for

log = logging.getLogger("maas.rerank")


class ServiceRerank(GuideRerank):
    """The guide's rerank body and answer, without Voyage's ``truncation`` and vLLM's and Infinity's
    fields: the service reads what its model reads and scores with its sigmoid, so it could not
    honour them (the router decides truncation before calling, and refuses raw logits for it)."""

    fields = FieldTable(tuple(f for f in GuideRerank.fields.fields
                              if f.name not in {"truncation", *(e.name for e in RERANK_EXTRAS)}))


SERVICE_RERANK = ServiceRerank()


@dataclass(frozen=True)
class RerankSettings:
    model_name: str = DEFAULT_RERANKER
    mapping: Mapping[str, str] = field(default_factory=dict)
    max_documents: int = 50
    max_document_length: int = 4096
    max_batch_size: int = 8
    batch_delay_ms: float = 20.0
    queue_timeout_ms: float = 1000.0
    device: str = "auto"
    mixed_precision: bool = True
    quantization: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RerankSettings:
        e = os.environ if env is None else env
        try:
            mapping = json.loads(e.get("RERANK_MODEL_MAPPING") or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"RERANK_MODEL_MAPPING is not valid JSON: {exc}") from exc
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in mapping.items()):
            raise ConfigError("RERANK_MODEL_MAPPING must be a JSON object of alias -> model name")
        quant = (e.get("RERANK_QUANTIZATION") or "false").strip().lower()
        device = check_device(e.get("RERANK_DEVICE") or "auto", "RERANK_DEVICE")
        return cls(
            model_name=e.get("RERANK_MODEL_NAME") or DEFAULT_RERANKER,
            mapping=mapping,
            max_documents=number(e, "RERANK_MAX_DOCUMENTS", int, 50, minimum=1),
            max_document_length=number(e, "RERANK_MAX_DOCUMENT_LENGTH", int, 4096, minimum=1),
            max_batch_size=number(e, "RERANK_MAX_BATCH_SIZE", int, 8, minimum=1),
            batch_delay_ms=number(e, "RERANK_BATCH_DELAY_MS", float, 20.0),
            queue_timeout_ms=number(e, "RERANK_QUEUE_TIMEOUT_MS", float, 1000.0, minimum=1),
            device=device,
            mixed_precision=bool_env(e.get("RERANK_MIXED_PRECISION"), True),
            quantization=quant in {"1", "true", "yes", "on", "int8"},
        )

    def names(self) -> dict[str, str]:
        """Every name the service answers to → the model it means."""
        return {self.model_name: self.model_name, **self.mapping}


class RerankService:
    def __init__(self, settings: RerankSettings) -> None:
        self.settings = settings
        self.schedulers: dict[str, Scheduler] = {}
        self.runs: dict[str, Any] = {}  # model -> the function that scores one batch in its thread
        self.backends: dict[str, str] = {}
        self.counters: dict[str, TokenCounter] = {}
        self.ready = False
        self.draining = False
        self.failed: BaseException | None = None
        r = self.registry = CollectorRegistry()
        self.requests = Counter("rerank_requests_total", "Rerank requests by status", ["status"], registry=r)
        self.pairs = Counter("rerank_pairs_total", "Query-document pairs scored", registry=r)
        self.batch_size = Histogram("rerank_batch_size", "Pairs per model batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_depth = Gauge("rerank_queue_pairs", "Pairs waiting to be scored", registry=r)
        self.queue_depth.set_function(lambda: sum(b.queued_items for b in self.schedulers.values()))
        self._executors: list[ThreadPoolExecutor] = []

    async def load(self) -> None:
        s = self.settings
        for model in dict.fromkeys(s.names().values()):
            scorer = await asyncio.to_thread(load_reranker, model, device=s.device,
                                             fp16=s.mixed_precision, int8=s.quantization)
            self.backends[model] = scorer.backend
            # usage counts what the model reads: its own tokenizer over each (query, document) pair
            self.counters[model] = counter_for([scorer.tokenizer_path, model])
            self.schedulers[model] = Scheduler(model, queue_timeout_s=s.queue_timeout_ms / 1000,
                                               observer=_Batches(self.batch_size))
            self.runs[model] = self._threaded(scorer.score)
            log.info("rerank model ready", extra={"model": model, "backend": scorer.backend})
        self.ready = True

    def resolve(self, name: str | None) -> str:
        if name is None:
            return self.settings.model_name
        model = self.settings.names().get(name)
        if model is None:
            raise ModelNotFound(f"The model '{name}' is not served here", param="model")
        return model

    async def rerank(self, request: web.Request) -> web.Response:
        if not self.ready:
            raise ServiceUnavailable("The rerank model is still loading")
        s = self.settings
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise InvalidRequest("Request body is not valid JSON") from None
        if isinstance(body, dict) and "model" not in body:
            body = {**body, "model": s.model_name}
        req = SERVICE_RERANK.parse(body, ParseLimits(max_inputs=s.max_documents)).request
        if not isinstance(req, RerankRequest):  # the guide's rerank codec parses nothing else
            raise TypeError(f"{type(SERVICE_RERANK).__name__} parsed a {type(req).__name__}")
        if len(req.query) > s.max_document_length:  # the query is scored with every document
            raise InvalidRequest(f"'query' has {len(req.query)} characters; at most {s.max_document_length} "
                                 "are allowed", param="query")
        for i, doc in enumerate(req.documents):
            if len(doc) > s.max_document_length:
                raise InvalidRequest(f"'documents[{i}]' has {len(doc)} characters; at most "
                                     f"{s.max_document_length} are allowed", param="documents")
        model = self.resolve(req.model)
        pairs = [(req.query, d) for d in req.documents]
        scores = await self.schedulers[model].submit(Work(
            pairs, self.runs[model], max_batch_size=s.max_batch_size, max_wait_s=s.batch_delay_ms / 1000))
        tokens = sum(await asyncio.to_thread(self.counters[model].count_query_documents, req.query, req.documents))
        self.pairs.inc(len(scores))
        outcome = RerankOutcome(str(req.model), rank([float(x) for x in scores], req.top_n), req.documents, tokens)
        return json_response(SERVICE_RERANK.render(req, None, outcome))

    def _threaded(self, fn: Any) -> Any:
        """``fn`` as the scheduler runs a batch: in a thread of its own, one batch at a time."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank-model")
        self._executors.append(executor)

        async def run(batch: list[Any], own: bool) -> Any:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, batch)

        return run

    async def close(self) -> None:
        for scheduler in self.schedulers.values():
            await scheduler.close()
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)


class _Batches:
    """The service's one queue metric besides depth: pairs per batch."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def batch(self, items: int) -> None:
        self.histogram.observe(items)

    def depth(self, items: int) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def refused(self, reason: str) -> None: ...
    def cancelled(self, items: int) -> None: ...
    def capacity(self, fixed: float, per_token: float, seconds: float, estimated: float | None) -> None: ...


SERVICE = web.AppKey("rerank_service", RerankService)


async def _rerank(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        response = await service.rerank(request)
    except Exception as exc:
        service.requests.labels(status=str(getattr(exc, "status", 500))).inc()
        raise
    service.requests.labels(status="200").inc()
    return response


async def _ready(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.draining:
        return json_response({"status": "draining"}, status=503)
    if service.ready:
        return json_response({"status": "ok"})
    return json_response({"status": "loading"}, status=503)


async def _live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _models(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "quadrate", "type": "rerank",
             "root": model, "backend": service.backends.get(model)}
            for name, model in service.settings.names().items()]
    return json_response({"object": "list", "data": data})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[SERVICE].registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_rerank_app(settings: RerankSettings | None = None) -> web.Application:
    service = RerankService(settings or RerankSettings.from_env())
    app = web.Application(middlewares=[edge_middleware], client_max_size=8 * 1024 * 1024)
    app[SERVICE] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loader = asyncio.create_task(service.load())
        loader.add_done_callback(lambda task: _stop_on_failure(service, task))
        yield
        loader.cancel()
        await service.close()

    app[DRAIN] = Drain()
    app.cleanup_ctx.append(lifecycle)
    for path in ("/rerank", "/v1/rerank"):
        app.router.add_post(path, _rerank)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/metrics", _metrics)
    return app


def _stop_on_failure(service: RerankService, task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        service.failed = task.exception()
        log.critical("rerank model failed to load: %s", service.failed)
        os.kill(os.getpid(), signal.SIGTERM)  # run() then exits non-zero


def run(host: str, port: int) -> int:
    from core.logs import setup_logging

    setup_logging(os.environ.get("RERANK_LOG_LEVEL", "INFO").upper())
    try:
        app = create_rerank_app()
    except ConfigError as exc:
        print(f"maas serve-rerank: {exc}", file=sys.stderr)
        return 1
    drain_s = number(os.environ, "RERANK_DRAIN_SECONDS", float, 5.0)

    def drain() -> bool:
        app[SERVICE].draining = True  # /health/ready answers 503
        return app[SERVICE].ready  # a model that never loaded served nothing to drain

    # 5 s preStop + the drain + 20 s for requests in flight fit the pod's 30 s grace period.
    asyncio.run(serve_until_stopped(app, host, port, drain_s=drain_s, shutdown_timeout=20.0, on_drain=drain))
    if app[SERVICE].failed is not None:
        print(f"maas serve-rerank: the model failed to load: {app[SERVICE].failed}", file=sys.stderr)
        return 1
    return 0
