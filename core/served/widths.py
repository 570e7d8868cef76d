"""The width each embedding model answers, checked on every fresh answer.

Declared by the route (``dimensions:``), else known from the loaded model (``Adapter.describe``,
probed when the route is prepared), else pinned from the first answer of a remote API. An
answer of another width, of another number of vectors, or with a value that is not finite, is a
502 naming the route: a wrong vector must never reach a client's index (nor the cache).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable

import numpy as np

from core.errors import UpstreamError
from core.vectors import FLOAT32

Pins = dict[Hashable, int]  # (upstream, served name) -> the first answer's width, kept across snapshots
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


class WidthGuard:
    def __init__(self, alias: str, declared: int | None, pins: Pins, pin_key: Hashable) -> None:
        self.alias = alias
        self.declared = declared
        self._pins = pins
        self._pin_key = pin_key

    @property
    def expected(self) -> int | None:
        return self.declared if self.declared is not None else self._pins.get(self._pin_key)

    def check(self, vectors: np.ndarray, n: int) -> np.ndarray:
        """``vectors`` if they are ``n`` finite rows of the model's width; UpstreamError otherwise."""
        alias = self.alias
        if vectors.ndim != 2:
            raise UpstreamError(f"The upstream for '{alias}' returned vectors of shape {vectors.shape}")
        if vectors.shape[0] != n:
            raise UpstreamError(f"The upstream for '{alias}' returned {vectors.shape[0]} vectors for {n} inputs")
        width = vectors.shape[1]
        want = self.declared if self.declared is not None else self._pins.get(self._pin_key)  # ``expected``, inline
        if want is None:
            self._pins[self._pin_key] = width
        elif width != want:
            raise UpstreamError(f"The upstream for '{alias}' returned {width}-wide vectors; the model is "
                                f"{want} wide", code="upstream_wrong_width")
        if not all_finite(vectors):
            raise UpstreamError(f"The upstream for '{alias}' returned a vector with a value that is not "
                                "a finite number", code="upstream_not_finite")
        return vectors
