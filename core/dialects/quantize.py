"""Quantised embedding outputs, computed in the gateway from the float vector, whatever the upstream.

* ``int8``: each vector scaled by its largest magnitude to -127..127 and rounded (Cohere's
  per-vector scaling); ``uint8`` the same shifted by 128 to 1..255.
* ``binary`` / ``ubinary``: one sign bit per dimension (1 where the value is > 0), packed 8 per
  byte, most significant first; ``ubinary`` as unsigned bytes, ``binary`` as signed ones by
  offset binary (byte - 128), as Cohere and Voyage define them. A width that is not a multiple
  of 8 is padded with zero bits.
"""

from __future__ import annotations

import numpy as np
import pybase64

TYPES = ("float", "int8", "uint8", "binary", "ubinary")
_FLOAT64 = np.dtype(np.float64)


def quantize(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """(n, d) float32 → the array of ``dtype`` (float32 unchanged)."""
    if dtype == "float":
        return np.asarray(vectors, dtype=np.float32)
    if dtype in ("int8", "uint8"):
        scale = np.max(np.abs(vectors), axis=1, keepdims=True)
        scale[scale == 0] = 1.0
        ints = np.clip(np.rint(vectors / scale * 127.0), -127, 127).astype(np.int16)
        return (ints + 128).astype(np.uint8) if dtype == "uint8" else ints.astype(np.int8)
    if dtype in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if dtype == "binary" else packed
    raise ValueError(f"unknown embedding type {dtype!r}")


def json_rows(array: np.ndarray) -> list[np.ndarray]:
    """The rows of ``array`` for orjson (``OPT_SERIALIZE_NUMPY``), which writes each row natively,
    without a Python object per value. Float rows are float64: the shortest repr of a float32
    value widened to float64 is the text ``tolist`` gave, byte for byte, so a client that reads a
    double gets the model's float32 value exactly. Integer rows stay as they are."""
    if array.dtype.kind == "f":
        return list(np.ascontiguousarray(array, dtype=_FLOAT64))
    return list(np.ascontiguousarray(array))


def as_base64(array: np.ndarray) -> list[str]:
    """One base64 string per row of the array's little-endian bytes (the standard alphabet, padded:
    the text ``base64.b64encode`` writes)."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return [pybase64.b64encode(row.tobytes()).decode() for row in little]
