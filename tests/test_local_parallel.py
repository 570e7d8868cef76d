"""``parallel_batches``: an in-process model running several batches at once, sharing the cores.

A batch that starts alone runs on every core torch was given; batches that run together share
them, each setting its own thread's count. A text's vector does not depend on how many threads its
batch ran on, and the router answers with the bare model's vectors under concurrent load."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from adapters.local import LocalAdapter, LocalModel
from adapters.local.models import SentenceEmbedder
from adapters.local.threads import set_torch_threads, torch_threads
from core.adapters import AdapterContext
from core.config import ModelRoute, Settings, UpstreamConfig
from core.scheduling import Scheduler, Work
from core.variant import DEFAULT_VARIANT, Variant
from tests.support.inprocess import serve, write_configs

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["Kittens are young cats.", "A cat is a small domesticated carnivorous mammal. " * 6, "Dogs bark.",
         "Berlin has a population of about 3.7 million registered inhabitants.", "Paris is in France.",
         "The quick brown fox jumps over the lazy dog, again and again, " * 10, "ok", "Zürich, 東京, São Paulo."]


class _Closable:
    def close(self) -> None:
        pass


async def test_batches_running_together_share_the_cores_and_a_lone_one_takes_them_all():
    cores = torch_threads()
    seen: list[tuple[str, int]] = []
    entered, hold = threading.Event(), threading.Event()

    def fn(batch: str, variant: object) -> str:
        seen.append((batch, torch.get_num_threads()))  # this thread's own count, as set for the batch
        if batch == "first":
            entered.set()
            hold.wait(10)
        return batch

    model = LocalModel(_Closable(), fn, "", parallel=2)
    try:
        first = asyncio.ensure_future(model.run("first", DEFAULT_VARIANT))
        assert await asyncio.to_thread(entered.wait, 10)
        assert await model.run("second", DEFAULT_VARIANT) == "second"  # runs while the first is held
        hold.set()
        assert await first == "first"
        assert await model.run("third", DEFAULT_VARIANT) == "third"  # alone again
        both = await asyncio.gather(model.run("fourth", DEFAULT_VARIANT), model.run("fifth", DEFAULT_VARIANT))
        assert both == ["fourth", "fifth"]  # started together (a queue shared out): half the cores each
    finally:
        model.close()
    half = max(1, cores // 2)
    assert seen[:3] == [("first", cores), ("second", half), ("third", cores)]
    assert sorted(seen[3:]) == [("fifth", half), ("fourth", half)]


async def test_the_schedulers_shares_run_side_by_side_on_half_the_cores_each():
    """8 requests × 4 inputs through the scheduler onto a model with two batches at once: two
    batches of 16, started in one turn, each on half the cores (not one on all and one on half)."""
    cores = torch_threads()
    seen: list[tuple[int, int]] = []
    together = threading.Barrier(2, timeout=10)  # both batches are in the model at once

    def fn(batch: list[int], variant: object) -> list[int]:
        seen.append((len(batch), torch.get_num_threads()))
        together.wait()
        return batch

    model = LocalModel(_Closable(), fn, "", parallel=2)
    scheduler = Scheduler("m", max_in_flight=2, spread=True)
    requests = [list(range(i * 4, i * 4 + 4)) for i in range(8)]
    try:
        answers = await asyncio.gather(*(scheduler.submit(Work(r, lambda items, own: model.run(items, DEFAULT_VARIANT),
                                                               max_batch_size=32, max_wait_s=0.005))
                                         for r in requests))
    finally:
        await scheduler.close()
        model.close()
    assert answers == requests
    assert seen == [(16, max(1, cores // 2))] * 2


def test_a_threads_own_count_holds_when_another_thread_sets_another():
    """torch sets a thread's count at its first use from the process-wide value, which any thread's
    set changes: a model thread's count must survive another's set made before its first batch."""
    ready, other_set = threading.Event(), threading.Event()
    got: list[int] = []

    def first() -> None:
        set_torch_threads(1)
        ready.set()
        other_set.wait(10)
        got.append(torch.get_num_threads())

    def second() -> None:
        ready.wait(10)
        set_torch_threads(3)
        other_set.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        set_torch_threads(torch_threads())
    assert got == [1]


@pytest.mark.parametrize(("kind", "device", "expected"), [("embeddings", "cpu", 2), ("rerank", "cpu", 1),
                                                          ("embeddings", "cuda", 1)])
def test_only_embedding_models_on_a_cpu_run_batches_side_by_side(monkeypatch, kind, device, expected):
    """What the scheduler is told before the model loads (as the load decides): a reranker (its
    ONNX session keeps its own threads) or a GPU (batches better large) runs one batch at a time."""
    import adapters.local as local

    monkeypatch.setattr(local, "resolve_device", lambda wanted: device)
    adapter = LocalAdapter(UpstreamConfig(type="local", options={"parallel_batches": 2}),
                           AdapterContext(settings=Settings()))
    route = ModelRoute(alias="m", kind=kind, served_name=MINILM, enabled=True, upstream=adapter.upstream)
    batching = adapter.batching(route)
    assert (batching.max_in_flight, batching.spread) == (expected, expected > 1)


def test_a_texts_vector_does_not_depend_on_the_threads_its_batch_ran_on():
    embedder = SentenceEmbedder(MINILM, device="cpu")
    cores = torch_threads()
    try:
        on_all = embedder.encode(TEXTS)
        set_torch_threads(1)
        on_one = embedder.encode(TEXTS)
    finally:
        set_torch_threads(cores)
    np.testing.assert_allclose(on_one, on_all, rtol=1e-6, atol=1e-7)


async def test_the_router_with_parallel_batches_answers_the_bare_models_vectors(aiohttp_client, tmp_path):
    routing = {"embeddings": [{"model": "m", "served_name": MINILM, "upstream": {
        "type": "local", "parallel_batches": 2, "max_wait_ms": 5, "calibrate": False}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))

    async def embed(texts: list[str]) -> np.ndarray:
        resp = await client.post("/v1/embeddings", json={"model": "m", "input": texts})
        assert resp.status == 200, await resp.text()
        return np.array([row["embedding"] for row in (await resp.json())["data"]], dtype=np.float32)

    groups = [TEXTS[i:i + 2] for i in range(0, len(TEXTS), 2)] * 3
    answers = await asyncio.gather(*(embed(g) for g in groups))  # batches formed and run side by side
    bare = SentenceEmbedder(MINILM, device="cpu")
    for texts, got in zip(groups, answers, strict=True):
        np.testing.assert_allclose(got, bare.encode(texts), rtol=1e-6, atol=1e-7)


def test_batches_in_two_threads_take_turns_with_the_tokenizer():
    """The tokenizer keeps its padding setting between calls: a default batch's tokens (each text
    its own length) and a variant batch's (padded, as tensors) made in two threads at once are each
    exactly what they are alone, and neither call fails."""
    embedder = SentenceEmbedder(MINILM, device="cpu")
    raw = Variant(normalize=False)
    texts = ["The quick brown fox jumps over the lazy dog, again and again. " * 8] * 31 + ["ok"]
    alone = embedder._tokenized(texts, 256)["input_ids"]
    padded = embedder._variant_features(texts, raw)["input_ids"].tolist()
    wrong: list[str] = []
    errors: list[BaseException] = []

    def loop(variant: bool) -> None:
        try:
            for _ in range(300):
                if variant:
                    if embedder._variant_features(texts, raw)["input_ids"].tolist() != padded:
                        wrong.append("variant")
                elif embedder._tokenized(texts, 256)["input_ids"] != alone:
                    wrong.append("default")
        except BaseException as exc:  # any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(v,)) for v in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert not wrong
