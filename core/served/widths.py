"""The width each embedding model answers, checked on every fresh answer.

Declared by the route (``dimensions:``), else known from the loaded model (``Adapter.describe``,
probed when the route is prepared), else pinned from the first answer of a remote API. An
answer of another width, of another number of vectors, or with a value that is not finite, is a
502 naming the route: a wrong vector must never reach a client's index (nor the cache).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from core.errors import UpstreamError
from core.vectors import all_finite

Pins = dict[Hashable, int]  # (upstream, served name) -> the first answer's width, kept across snapshots


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
