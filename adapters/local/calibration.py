"""An in-process model's batch time, measured once as it loads: admission then knows the model's
speed before any request ran (``Batching.speed``), instead of admitting anything on a guess.

A batch takes ``fixed + per_token × padded`` seconds (``core.scheduling.capacity``). The model runs
one warm-up batch (loading, allocating), then a batch of short and one of long inputs, each
twice (the faster time of two: a pause of the machine is not the model's speed); the two sizes
give the two costs. Their padded tokens are counted with the model's own tokenizer, as the
scheduler counts a request's. The batches are small (``BATCH`` inputs): a cost per padded token
does not depend much on how many inputs carry the tokens, and a start should not wait on this.
On two idle cores, MiniLM spends about a quarter of a second on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

SHORT_WORDS, LONG_WORDS = 6, 120  # a sentence, and a paragraph (~100 tokens: what indexing sends)
BATCH = 8
REPEATS = 2
WORD = "calibrating "


def texts(batch_size: int, words: int, max_tokens: int | None) -> list[str]:
    """``batch_size`` inputs of about ``words`` tokens (within the model's limit)."""
    n = min(words, max(1, (max_tokens or words + 8) - 8))
    return [f"{i} " + WORD * n for i in range(batch_size)]


def measure(run: Callable[[list[Any]], Any], count: Callable[[list[Any]], Sequence[int]], batches: list[list[Any]],
            clock: Callable[[], float] = time.perf_counter) -> tuple[float, float] | None:
    """The (fixed, per_token) of ``run`` from ``batches`` (the first is the warm-up, then one short
    and one long), each batch's padded tokens its size × its longest ``count``; None when the
    times do not say (the long batch was not slower)."""
    run(batches[0])
    points = []
    for batch in batches[1:]:
        padded = len(batch) * max(count(batch))
        best = float("inf")
        for _ in range(REPEATS):
            started = clock()
            run(batch)
            best = min(best, clock() - started)
        points.append((float(padded), best))
    (x1, t1), (x2, t2) = points
    if x2 <= x1 or t2 <= t1:
        return None
    per_token = (t2 - t1) / (x2 - x1)
    return max(0.0, t1 - per_token * x1), per_token


def calibrate(run: Callable[[list[Any]], Any], count: Callable[[list[Any]], Sequence[int]], batch_size: int,
              max_tokens: int | None, pairs: bool = False) -> tuple[float, float] | None:
    """Time ``run`` (a model's batch function) on batches of short and long inputs (``BATCH``, or
    ``batch_size`` if smaller), counted by ``count``; with ``pairs`` the inputs are (query,
    document) pairs, as a reranker scores them."""
    def batch(words: int) -> list[Any]:
        docs = texts(min(batch_size, BATCH), words, max_tokens)
        return [("a short query", d) for d in docs] if pairs else docs

    return measure(run, count, [batch(SHORT_WORDS), batch(SHORT_WORDS), batch(LONG_WORDS)])
