"""What every request kind shares: outcomes for a dialect to render, ranking, the over-limit refusal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidRequest


def rank(scores: Sequence[float], top_n: int | None) -> list[tuple[int, float]]:
    """(index, score) best first, cut to ``top_n``; ties keep document order."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:top_n]
    return [(i, float(scores[i])) for i in order]


def over_limit(param: str, i: int, size: str, limit: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}[{i}]' has {size}; the model reads at most {limit} and truncation is not "
                          "allowed (the route's truncation, or the request's own setting)", param=param,
                          code="context_length_exceeded")


def usage(counted: int | None, reported: int | None, count: Callable[[], list[int]]) -> int:
    """The request's prompt tokens: as counted before the call, else as the upstream reported,
    else counted now with the model's tokenizer."""
    if counted is not None:
        return counted
    return reported if reported is not None else sum(count())


@dataclass(slots=True)
class EmbeddingsOutcome:
    """What the model gave, shaped as asked (``dimensions``), for a dialect to render."""

    model: str
    vectors: np.ndarray  # (n, d) float32
    tokens: int
    cache_hits: int | None = None  # inputs the embedding cache served (None: no cache on the model)
    spaces: tuple[str, ...] | None = None  # the embedding space of each output type (core.space)


@dataclass(slots=True)
class RerankOutcome:
    model: str
    ranked: list[tuple[int, float]]  # (document index, score), best first, cut to top_n
    documents: list[str]
    tokens: int  # every (query, document) pair scored, windows of a long document each counted
    cache_hits: None = None  # rerank is not cached
    spaces: None = None  # scores live in no embedding space
    # Each document's tokens with the query, as sent (not as windowed): what a per-document
    # billing rule reads (Cohere's search units). None when nothing counted them.
    document_tokens: list[int] | None = None
