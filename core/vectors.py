"""Vector shaping every dialect shares (unit length, Matryoshka-style ``dimensions``) and the
float32 checks of the request path: finiteness and conversion without numpy's heavier calls."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

FLOAT32 = np.dtype(np.float32)  # the native float32: ``array.dtype is FLOAT32`` costs no dtype comparison
_BYTES_CHECK_VALUES = 1 << 16  # up to this many values, the bytes are read (below); numpy beyond
_LITTLE = sys.byteorder == "little"


def all_finite(vectors: np.ndarray) -> bool:
    """Whether every value of a float32 array is finite. A float32 is not finite exactly when its
    exponent bits are all ones, so its most significant byte is then 0x7f or 0xff: an array none
    of whose values has such a byte is finite, read from its bytes without a numpy ufunc (two of
    them, ``isfinite`` and ``all``, cost a small answer more than the rest of its check). Any
    other array, or a large one, is checked by numpy."""
    if _LITTLE and vectors.dtype is FLOAT32 and vectors.size <= _BYTES_CHECK_VALUES:
        high = vectors.tobytes()[3::4]  # little-endian: each value's most significant byte
        if b"\x7f" not in high and b"\xff" not in high:
            return True
    return bool(np.isfinite(vectors).all())


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
