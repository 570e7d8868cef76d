"""Vector shaping every dialect shares: unit length, and Matryoshka-style ``dimensions``."""

from __future__ import annotations

import numpy as np

FLOAT32 = np.dtype(np.float32)  # the native float32: ``array.dtype is FLOAT32`` costs no dtype comparison


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit length per row (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


def shape_vectors(vectors: np.ndarray, dimensions: int | None, renormalise: bool = True) -> np.ndarray:
    """Truncate to ``dimensions`` and renormalise to unit length (unless asked for vectors as the
    model pooled them); untouched without fewer dimensions."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    return normalise(vectors[:, :dimensions]) if renormalise else vectors[:, :dimensions]
