"""An in-process model's batch time, measured once as it loads: admission then knows the model's
speed before any request ran (``Batching.speed``), instead of admitting anything on a guess.

A batch takes ``fixed + per_token × padded`` seconds (``core.scheduling.capacity``). The model runs
one warm-up batch (loading, allocating), then a batch of short and one of long inputs, each
twice (the faster time of two: a pause of the machine is not the model's speed); the two sizes
give the two costs. Their padded tokens are counted with the model's own tokenizer, as the
scheduler counts a request's, and the long inputs are as long as the model reads (up to
``LONG_TOKENS``) by that count: an input past the model's limit is cut by the model, so its
counted tokens past the limit would cost nothing and make the cost per token look smaller. Long
inputs cost more per token than short ones (attention grows with the square of the length), so
the line through a short and a longest batch errs on the slow side for lengths between: a request
refused at once, never one admitted and answered 504. The batches are small (``BATCH`` inputs): a cost per padded token
does not depend much on how many inputs carry the tokens, and a start should not wait on this.
On two idle cores, MiniLM spends about a quarter of a second on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

SHORT_WORDS = 6  # a sentence
LONG_TOKENS = 512  # the longest input timed (the model's limit when smaller)
BATCH = 8
REPEATS = 2
WORD = "calibrating "


def texts(batch_size: int, words: int, max_tokens: int | None) -> list[str]:
    """``batch_size`` inputs of ``words`` words (within the model's limit at a token a word)."""
    n = min(words, max(1, (max_tokens or words + 8) - 8))
    return [f"{i} " + WORD * n for i in range(batch_size)]


def longest(batch_size: int, max_tokens: int | None, count: Callable[[list[str]], Sequence[int]]) -> list[str]:
    """Inputs as long as the model reads, ``LONG_TOKENS`` at most, by ``count`` (a word may be
    several tokens)."""
    limit = min(LONG_TOKENS, max_tokens or LONG_TOKENS)
    words = limit
    docs = texts(batch_size, words, limit)
    for _ in range(8):
        tokens = max(count(docs))
        if tokens <= limit or words == 1:
            break
        words = max(1, words * (limit - 8) // tokens)
        docs = texts(batch_size, words, limit)
    return docs


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
    size = min(batch_size, BATCH)
    query = "a short query"

    def pairs_of(docs: list[str]) -> list[Any]:
        return [(query, d) for d in docs] if pairs else docs

    def count_docs(docs: list[str]) -> Sequence[int]:
        return count(pairs_of(docs))

    short = pairs_of(texts(size, SHORT_WORDS, max_tokens))
    return measure(run, count, [short, short, pairs_of(longest(size, max_tokens, count_docs))])
