"""Item 5: how latency and router memory grow with the number of inputs and their length.

One router on the embedded default (MiniLM in-process). Each point is one request, repeated;
the router's resident memory is sampled every 20 ms while it runs. A linear cost shows as a
flat cost per input (or per token); a blow-up as a rising one.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from bench import servers
from bench.loadgen import auth_headers, median, sentences
from bench.report import Section
from bench.throughput import MODEL

ROUTING = {"embeddings": [{"model": "minilm", "served_name": MODEL, "upstream": {
    "type": "local", "max_batch_size": 32, "max_wait_ms": 2, "timeout_seconds": 900}}]}


class PeakRss:
    """Sample a process's RSS (with its children) in a thread; keep the peak."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def current(self) -> int:
        return self.proc.memory_info().rss

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _post(url: str, body: dict) -> float:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **auth_headers()})
    began = time.perf_counter()
    with urllib.request.urlopen(req, timeout=900) as resp:
        resp.read()
    return time.perf_counter() - began


def _texts(n: int, tokens: int) -> list[str]:
    return sentences(n, words=max(1, tokens - 3), seed=tokens)  # the tokenizer adds [CLS], [SEP], a period


def _point(server: servers.Server, n: int, tokens: int, repeats: int) -> tuple[float, float]:
    texts = _texts(n, tokens)
    with PeakRss(server.pid) as rss:
        times = [_post(server.url + "/v1/embeddings", {"model": "minilm", "input": texts}) for _ in range(repeats)]
    return median(times) * 1000, rss.peak / 2**20


def _linear_fit(xs: list[float], ys: list[float]) -> float:
    """R² of the least-squares line through the points."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    ss_res = sum((y - (my + slope * (x - mx))) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return 1 - ss_res / ss_tot if ss_tot else 1.0


def run(work: Path, *, quick: bool, tool: str = "hey") -> Section:
    from core.tokenization import load_counter

    counter = load_counter(MODEL)
    counts = [1, 16, 128, 512] if quick else [1, 4, 16, 64, 256, 1024, 2048]
    lengths = [16, 64, 256, 512] if quick else [16, 32, 64, 128, 256, 512]
    repeats = 1 if quick else 3
    sec = Section("growth", "5. Cost growth with inputs and length (router, MiniLM in-process)")
    by_count, by_length = [], []
    with servers.running(servers.router(work, "router-growth", ROUTING,
                                        ROUTER_REQUEST_TIMEOUT_SECONDS="900")) as r:
        _point(r, 32, 16, 1)  # warm up
        idle = PeakRss(r.pid).current() / 2**20
        for n in counts:
            ms, mib = _point(r, n, 16, repeats)
            by_count.append([n, ms, ms / n, mib, mib - idle])
        for tokens in lengths:
            real = median([float(c) for c in counter.count(_texts(16, tokens))])
            ms, mib = _point(r, 16, tokens, repeats)
            by_length.append([tokens, real, ms, ms / (16 * real), mib, mib - idle])
    sec.table(["inputs (16 tokens)", "latency ms", "ms per input", "peak RSS MiB", "over idle MiB"], by_count,
              caption=f"Latency (median of {repeats}) and the router's peak RSS while serving one request:")
    sec.table(["tokens asked", "tokens (measured)", "latency ms", "ms per token", "peak RSS MiB",
               "over idle MiB"], by_length, caption="16 inputs of growing length:")
    r2 = _linear_fit([float(x[0]) for x in by_count], [x[1] for x in by_count])
    tail = by_count[-1][2] / min(x[2] for x in by_count[len(by_count) // 2:])
    sec.notes.append(f"Latency against inputs: linear fit R² = {r2:.3f}; cost per input at {counts[-1]} inputs is "
                     f"{tail:.2f}× the lowest per-input cost of the larger half (1.0 = perfectly linear).")
    sec.notes.append("MiniLM reads at most 256 tokens (max_seq_length); longer inputs are truncated by the model, "
                     "so latency flattens past 256.")
    sec.chart("line", "Latency vs number of inputs", [x[0] for x in by_count], {"ms": [x[1] for x in by_count]},
              xlabel="inputs", ylabel="ms", logx=True, logy=True)
    sec.chart("line", "Latency vs input length (16 inputs)", [x[1] for x in by_length],
              {"ms": [x[2] for x in by_length]}, xlabel="tokens per input", ylabel="ms")
    sec.chart("line", "Router peak RSS over idle", [x[0] for x in by_count],
              {"by inputs": [x[4] for x in by_count]}, xlabel="inputs", ylabel="MiB", logx=True)
    sec.target("cost per input at the largest count ≤ 1.5× (no blow-up)", tail, 1.5, lower=True)
    return sec
