"""Vector shaping every dialect shares: unit length, and Matryoshka-style ``dimensions``."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT32 = np.dtype(np.float32)  # the native float32: ``array.dtype is FLOAT32`` costs no dtype comparison


def as_float32(vectors: Any) -> np.ndarray:
    """``vectors`` as a float32 array: itself when it is one already (the common answer), without a
    call into numpy's conversion."""
    if type(vectors) is np.ndarray and vectors.dtype is FLOAT32:
        return vectors
    return np.asarray(vectors, dtype=np.float32)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit length per row (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


def shape_vectors(vectors: np.ndarray, dimensions: int | None, renormalise: bool = True) -> np.ndarray:
    """Truncate to ``dimensions`` and renormalise to unit length (unless asked for vectors as the
    model pooled them); untouched without fewer dimensions."""
    vectors = as_float32(vectors)
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    return normalise(vectors[:, :dimensions]) if renormalise else vectors[:, :dimensions]
