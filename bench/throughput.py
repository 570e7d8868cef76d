"""Item 2: embedding throughput of the embedded default (MiniLM, in-process) in sentences/s.

Three ways to serve the same model on the same machine, one at a time so they never share
the CPU: the bare model's ``encode`` in this process at its best batch size (the practical
limit), the router with many small concurrent requests, and Infinity with the same load.
With the ``infinity`` adapter installed, the router in front of Infinity is measured too. The
router runs with one batch at a time on every core (the adapter's default) and with
``parallel_batches: 2`` (two batches side by side, sharing the cores, as configs/routing.yaml runs
MiniLM); the bare model is also timed as two callers on one thread each, the same way of using
the cores without a router.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import servers
from bench.loadgen import ItemRun, embed_load, median, sentences
from bench.report import Section

CLIENTS, PER_REQUEST = 8, 4
# A load that keeps the best batch full: while one batch runs, a whole next one waits (clients ×
# inputs = twice the batch), so the router is held to the bare model at the same batch size.
FILL_PER_REQUEST = 8
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def bare_encode(batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """Sentences/s of SentenceEmbedder.encode (what the local adapter runs) per batch size."""
    from adapters.local.models import SentenceEmbedder

    model = SentenceEmbedder(MODEL, "cpu")
    pool = sentences(4096)
    model.encode(pool[:64])  # warm up
    out: dict[int, float] = {}
    for bs in batch_sizes:
        done, i, began = 0, 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            model.encode(pool[i:i + bs])
            done += bs
            i = (i + bs) % (len(pool) - bs)
        out[bs] = done / (time.perf_counter() - began)
    return out


def bare_parallel(batch_size: int, seconds: float, callers: int = 2) -> float:
    """Sentences/s of ``callers`` threads each calling encode at ``batch_size``, torch's threads
    shared between them (as the local adapter's ``parallel_batches`` runs them)."""
    import threading

    from adapters.local.models import SentenceEmbedder
    from adapters.local.threads import set_torch_threads, torch_threads

    model = SentenceEmbedder(MODEL, "cpu")
    pool = sentences(4096)
    model.encode(pool[:64])
    cores, done = torch_threads(), [0] * callers
    began = time.perf_counter()

    def caller(k: int) -> None:
        set_torch_threads(max(1, cores // callers))
        i = k * 997
        while time.perf_counter() - began < seconds:
            model.encode(pool[i:i + batch_size])
            done[k] += batch_size
            i = (i + batch_size) % (len(pool) - batch_size)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - began)


def _routing(upstream: dict) -> dict:
    return {"embeddings": [{"model": "minilm", "served_name": MODEL, "upstream": upstream}]}


def _side_by_side(url: str, best_bs: int, repeats: int, seconds: float, bare_s: float,
                  **load: int) -> tuple[list[ItemRun], list[float]]:
    """Runs of the router at ``url`` with the bare model's best batch measured before and after
    each (this host's speed drifts over minutes), so each run is held to the two beside it."""
    near = [bare_encode([best_bs], bare_s)[best_bs]]
    runs: list[ItemRun] = []
    for _ in range(repeats):
        runs += _repeat(url + "/v1/embeddings", "minilm", 1, seconds, **load)
        near.append(bare_encode([best_bs], bare_s)[best_bs])
    return runs, near


def _repeat(url: str, model: str, repeats: int, seconds: float, clients: int = CLIENTS,
            per_request: int = PER_REQUEST) -> list[ItemRun]:
    embed_load(url, model, clients=clients, per_request=per_request, seconds=2)  # warm up
    return [embed_load(url, model, clients=clients, per_request=per_request, seconds=seconds)
            for _ in range(repeats)]


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    repeats, seconds = (1, 5) if quick else (3, 12)
    sec = Section("embed", "2. Embedding throughput (all-MiniLM-L6-v2, CPU)")
    bare_s = 3 if quick else 6
    bare = bare_encode([1, 8, 32] if quick else [1, 8, 16, 32, 64], bare_s)
    best_bs = max(bare, key=bare.get)
    runs: dict[str, list[ItemRun]] = {}
    local = {"type": "local", "max_batch_size": 32, "max_wait_ms": 2, "timeout_seconds": 60}
    with servers.running(servers.router(work, "router-local", _routing(local))) as r:
        small = "router (in-process model)"
        runs[small], beside = _side_by_side(r.url, best_bs, repeats, seconds, bare_s)
    two = "router (in-process model, parallel_batches 2)"
    with servers.running(servers.router(work, "router-local-two", _routing({**local, "parallel_batches": 2}))) as r:
        runs[two], beside_two = _side_by_side(r.url, best_bs, repeats, seconds, bare_s)
    half = CLIENTS * PER_REQUEST // 2
    bare_two = bare_parallel(half, bare_s)
    fill_clients = 2 * best_bs // FILL_PER_REQUEST
    filled = f"router (in-process model, batches up to {best_bs}), {fill_clients} clients × {FILL_PER_REQUEST}"
    with servers.running(servers.router(work, "router-local-fill",
                                        _routing({**local, "max_batch_size": best_bs}))) as r:
        runs[filled], beside_filled = _side_by_side(r.url, best_bs, repeats, seconds, bare_s, clients=fill_clients,
                                                    per_request=FILL_PER_REQUEST)
    if servers.has_infinity():
        with servers.running(servers.infinity(work, "minilm")) as inf:
            runs["Infinity"] = _repeat(inf.url + "/v1/embeddings", "minilm", repeats, seconds)
            runs["Infinity, 8 clients × 8"] = _repeat(inf.url + "/v1/embeddings", "minilm", repeats, seconds,
                                                      per_request=8)
            if "infinity" in servers.adapter_types():
                up = {"type": "infinity", "url": inf.url, "timeout_ms": 60000}
                with servers.running(servers.router(work, "router-infinity", _routing(up))) as ri:
                    runs["router → Infinity"] = _repeat(ri.url + "/v1/embeddings", "minilm", repeats, seconds)
            else:
                sec.notes.append("Router → Infinity not measured: no `infinity` adapter in this checkout.")
    else:
        sec.notes.append("Infinity not measured: .venv-infinity is missing (scripts/bootstrap.sh bench).")
    sec.table(["bare encode batch size", "sentences/s"], [[bs, v] for bs, v in bare.items()]
              + [[f"2 callers × {half}, one half of the cores each", bare_two]],
              caption="The bare model in one process (the practical limit):")
    limit = bare[best_bs]
    inf = median([r.items_per_s for r in runs["Infinity"]]) if "Infinity" in runs else None
    rows = []
    for name, rs in runs.items():
        v = median([r.items_per_s for r in rs])
        rows.append([name, v, v / limit, (v / inf) if inf else None, median([r.p50_ms for r in rs]),
                     median([r.p99_ms for r in rs]), sum(r.errors for r in rs)])
    sec.table(["served by", "sentences/s", "× bare best", "× Infinity", "p50 ms", "p99 ms", "errors"], rows,
              caption=f"{CLIENTS} concurrent clients × {PER_REQUEST} sentences per request unless named "
                      f"(12-word sentences, {seconds} s runs, medians of {repeats}); bare best = batch {best_bs}:")
    sec.chart("bar", "Embedding sentences/s", [f"bare b{best_bs}"] + [r[0] for r in rows],
              {"sentences/s": [limit] + [r[1] for r in rows]}, ylabel="sentences/s")
    router = rows[0][1]
    ratios = {}
    for name, near in ((small, beside), (two, beside_two), (filled, beside_filled)):
        ratios[name] = [run.items_per_s * 2 / (x + y) for run, x, y in zip(runs[name], near, near[1:], strict=False)]
        sec.notes.append(f"{name}: the bare model's batch of {best_bs} again before and after each run, "
                         f"{' / '.join(f'{v:.0f}' for v in near)} sentences/s; each run against the mean of the "
                         f"two beside it: {' / '.join(f'{x:.3f}' for x in ratios[name])}.")
    sec.target("router ≥ 0.9× bare model (sentences/s; side by side)", median(ratios[small]), 0.9)
    sec.target("router with parallel_batches 2 ≥ 0.9× bare model (same load; side by side)", median(ratios[two]), 0.9)
    sec.target("router at a load that fills the best batch ≥ 0.97× bare best (side by side)", median(ratios[filled]),
               0.97)
    if inf:
        sec.target("router ≥ 1.2× Infinity (sentences/s)", router / inf, 1.2)
    return sec
