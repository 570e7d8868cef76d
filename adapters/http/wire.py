"""Read upstream answers in the OpenAI embeddings and Cohere rerank shapes, strictly.

An answer that does not hold exactly one vector per input (or one score per document) is an
upstream failure (502), never a short or misordered response to the client.
"""

from __future__ import annotations

import binascii
from typing import Any, TypeGuard

import numpy as np
import pybase64

from core.errors import UpstreamError
from core.vectors import FLOAT32, all_finite


def _bad(alias: str, what: str) -> UpstreamError:
    return UpstreamError(f"The upstream for '{alias}' sent an invalid answer: {what}", code="upstream_bad_response")


def _usage(answer: dict[str, Any]) -> int | None:
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def _is_index(index: Any, count: int) -> TypeGuard[int]:
    return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count


def read_embeddings(answer: Any, count: int, alias: str) -> tuple[np.ndarray, int | None]:
    """Vectors (count, d) float32 in input order, and the upstream's prompt-token count."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise _bad(alias, "no 'data' list")
    if len(data) != count:
        raise _bad(alias, f"{len(data)} vectors for {count} inputs")
    if count == 1:  # the common answer: one row, no order to restore
        item = data[0]
        if not isinstance(item, dict) or not _is_index(item.get("index"), 1):
            raise _bad(alias, "missing, repeated or out-of-range 'index'")
        vectors = _vector(item.get("embedding"), alias)[None, :]
        if not all_finite(vectors):
            raise _bad(alias, "non-finite values in a vector")
        return vectors, _usage(answer)
    rows: list[np.ndarray | None] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not _is_index(index, count) or rows[index] is not None:
            raise _bad(alias, "missing, repeated or out-of-range 'index'")
        rows[index] = _vector(item.get("embedding"), alias)
    try:
        vectors = np.stack(rows)  # type: ignore[arg-type]
    except ValueError:
        raise _bad(alias, "vectors of different lengths") from None
    if not all_finite(vectors):  # the whole answer refused, as one call's (a coalesced call's too)
        raise _bad(alias, "non-finite values in a vector")
    return vectors, _usage(answer)


def _vector(value: Any, alias: str) -> np.ndarray:
    if isinstance(value, str):  # base64 of little-endian float32, as OpenAI and Infinity send it
        try:
            raw = pybase64.b64decode(value, validate=True)  # SIMD: a 1,024-wide vector in ~1 µs, not ~10
        except (binascii.Error, ValueError):
            # pybase64 refuses a little more (padding past the end): what it refuses, the standard
            # library's strict decoder settles, so exactly the same answers pass as before
            try:
                raw = binascii.a2b_base64(value, strict_mode=True)
            except (binascii.Error, ValueError):
                raise _bad(alias, "an embedding is not valid base64") from None
        if not raw or len(raw) % 4:
            raise _bad(alias, "a base64 embedding is not a whole number of float32 values")
        vector = np.frombuffer(raw, dtype="<f4")
        return vector if vector.dtype is FLOAT32 else vector.astype(np.float32)  # native already on little-endian
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                 for x in value):
        return np.asarray(value, dtype=np.float32)
    raise _bad(alias, "an embedding is neither a list of numbers nor base64")


def read_rerank(answer: Any, count: int, alias: str) -> tuple[list[float], int | None]:
    """One score per document in document order, from Cohere-style ``results``."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise _bad(alias, "no 'results' list")
    if len(results) != count:
        raise _bad(alias, f"{len(results)} scores for {count} documents")
    scores: list[float | None] = [None] * count
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if not _is_index(index, count) or scores[index] is not None:
            raise _bad(alias, "missing, repeated or out-of-range 'index'")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or score != score:
            raise _bad(alias, "a 'relevance_score' is not a number")
        scores[index] = float(score)
    return scores, _usage(answer)  # type: ignore[return-value]
