"""The width each embedding route answers, checked on every answer.

Declared by the route (``dimensions:``), else known from the loaded model (``Adapter.describe``,
probed when the route is prepared), else pinned from the first answer of a remote API. An
answer of another width, or with a value that is not finite, is a 502 naming the route: a
wrong-width vector must never reach a client's index.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from core.errors import UpstreamError

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ModelRoute


class WidthGuard:
    def __init__(self) -> None:
        self._pinned: dict[Hashable, int] = {}  # (upstream, served name) -> the first answer's width

    def expected(self, route: ModelRoute, adapter: Adapter) -> int | None:
        if route.dimensions is not None:
            return route.dimensions
        known = adapter.describe(route).get("dimensions")
        return int(known) if known else self._pinned.get((route.upstream, route.served_name))

    def check(self, route: ModelRoute, adapter: Adapter, vectors: np.ndarray) -> None:
        if vectors.ndim != 2:
            raise UpstreamError(f"The upstream for '{route.alias}' returned vectors of shape {vectors.shape}")
        width = vectors.shape[1]
        want = self.expected(route, adapter)
        if want is None:
            self._pinned[(route.upstream, route.served_name)] = width
        elif width != want:
            raise UpstreamError(f"The upstream for '{route.alias}' returned {width}-wide vectors; the model is "
                                f"{want} wide", code="upstream_wrong_width")
        if not np.isfinite(vectors).all():
            raise UpstreamError(f"The upstream for '{route.alias}' returned a vector with a value that is not "
                                "a finite number", code="upstream_not_finite")
