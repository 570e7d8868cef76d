"""Adapter type ``local``: models run in this process, micro-batched in a worker thread.

Upstream options (routing.yaml, under ``upstream``): ``max_batch_size`` (32),
``max_wait_ms`` (2), ``device`` (``auto``). The model is the route's ``served_name`` (a packaged
name, a local folder or a cached Hugging Face id), or ``options: {model_path: ...}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from adapters.local.models import SentenceEmbedder, load_reranker
from core import hookimpl
from core.adapters import AdapterContext, EmbedResult, RerankResult
from core.batching import MicroBatcher
from core.tokenization import load_counter

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig
    from core.flow import Flow

log = logging.getLogger("maas.adapters.local")


class LocalModel:
    """One loaded model and the batcher in front of it."""

    def __init__(self, model: Any, batcher: MicroBatcher, tokenizer_path: str) -> None:
        self.model = model
        self.batcher = batcher
        self.tokenizer_path = tokenizer_path


_OPTIONS = {"max_batch_size", "max_wait_ms", "device"}


def _model_name(route: "ModelRoute") -> str:
    return str(route.options.get("model_path") or route.served_name)
_DEVICES = {"auto", "cpu", "gpu", "cuda"}


class LocalAdapter:
    """One instance per (upstream, kind, model): a model leaves memory with the last route naming it."""

    @classmethod
    def instance_key(cls, route: "ModelRoute") -> tuple[str, str]:
        return route.kind, _model_name(route)

    @classmethod
    def validate_options(cls, upstream: "UpstreamConfig") -> None:
        opts = upstream.options
        unknown = sorted(set(opts) - _OPTIONS)
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for upstream type 'local' "
                             f"(known: {', '.join(sorted(_OPTIONS))})")
        size = opts.get("max_batch_size", 32)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"'max_batch_size' must be a positive integer, got {size!r}")
        wait = opts.get("max_wait_ms", 2)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
            raise ValueError(f"'max_wait_ms' must be a number >= 0, got {wait!r}")
        if str(opts.get("device", "auto")).lower() not in _DEVICES:
            raise ValueError(f"'device' must be one of {', '.join(sorted(_DEVICES))}")

    def __init__(self, upstream: "UpstreamConfig", context: AdapterContext) -> None:
        opts = upstream.options
        self.max_batch_size = int(opts.get("max_batch_size", 32))
        self.max_wait_s = float(opts.get("max_wait_ms", 2)) / 1000.0
        self.device = str(opts.get("device", "auto"))
        self.metrics = context.metrics
        self._models: dict[tuple[str, str], LocalModel] = {}
        self._loading: dict[tuple[str, str], asyncio.Task] = {}

    async def prepare(self, route: "ModelRoute") -> None:
        key = (route.kind, _model_name(route))
        if key in self._models:
            return
        if key not in self._loading:
            self._loading[key] = asyncio.create_task(self._load(route, key))
        try:
            self._models[key] = await self._loading[key]
        finally:
            self._loading.pop(key, None)

    async def _load(self, route: "ModelRoute", key: tuple[str, str]) -> LocalModel:
        name = key[1]
        log.info("loading %s model %s", route.kind, name)
        if route.kind == "embeddings":
            model = await asyncio.to_thread(SentenceEmbedder, name, self.device)
            fn = model.encode
        else:
            model = await asyncio.to_thread(load_reranker, name, device=self.device)
            fn = model.score
        on_batch = None
        if self.metrics is not None:
            hist = self.metrics.batch_size.labels(model=route.alias)
            on_batch = hist.observe
        batcher = MicroBatcher(fn, max_batch_size=self.max_batch_size, max_wait_s=self.max_wait_s,
                               name=name, on_batch=on_batch)
        return LocalModel(model, batcher, model.tokenizer_path)

    def tokenizer_name(self, route: "ModelRoute") -> str | None:
        loaded = self._models.get((route.kind, _model_name(route)))
        return loaded.tokenizer_path if loaded else None

    async def _model(self, route: "ModelRoute") -> LocalModel:
        key = (route.kind, _model_name(route))
        loaded = self._models.get(key)
        if loaded is None:
            await self.prepare(route)
            loaded = self._models[key]
        return loaded

    async def embed(self, route: "ModelRoute", inputs: Sequence[Any], flow: "Flow | None") -> EmbedResult:
        loaded = await self._model(route)
        texts = list(inputs)
        if texts and not isinstance(texts[0], str):
            texts = load_counter(loaded.tokenizer_path).decode_inputs(texts)
        rows = await loaded.batcher.submit(texts)
        return EmbedResult(vectors=np.stack(rows).astype(np.float32, copy=False))

    async def rerank(self, route: "ModelRoute", query: str, documents: Sequence[str],
                     flow: "Flow | None") -> RerankResult:
        loaded = await self._model(route)
        scores = await loaded.batcher.submit([(query, d) for d in documents])
        return RerankResult(scores=[float(s) for s in scores])

    async def close(self) -> None:
        for loaded in self._models.values():
            await loaded.batcher.close()
        self._models.clear()


@hookimpl
def register_adapters(register):
    register("local", LocalAdapter)
