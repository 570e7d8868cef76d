"""Response bodies in the OpenAI / guide shapes, and the vector shaping they share."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from core.requests import RerankRequest


def shape_vectors(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Truncate to ``dimensions`` and renormalise to unit length (Matryoshka-style)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (cut / norms).astype(np.float32)


def embeddings_body(model: str, vectors: np.ndarray, encoding_format: str, prompt_tokens: int) -> dict[str, Any]:
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
                for i, row in enumerate(little)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def rerank_body(model: str, req: RerankRequest, scores: list[float], top_n: int | None,
                total_tokens: int) -> dict[str, Any]:
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    if top_n is not None:
        order = order[:top_n]
    results = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if req.return_documents:
            item["document"] = {"text": req.documents[i]}
        results.append(item)
    return {"object": "rerank", "model": model, "results": results,
            "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens}}
