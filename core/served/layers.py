"""A layer a plugin puts between a served model's callers and its scheduler: the embedding cache.

An ``EmbedLayer`` is registered once (``register_embed_layers``) and bound per served model:
``bind`` returns the route's ``BoundLayer``, or None when it does not apply to that route under
the snapshot's flags. A bound layer answers what it can itself and asks ``compute`` (the
scheduler, the width guard, the adapter) for the rest, returning how many inputs it answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from core.variant import DEFAULT_VARIANT, Variant

if TYPE_CHECKING:
    from core.adapters import EmbedResult
    from core.config import ModelRoute
    from core.options import OptionSchema

Compute = Callable[[list[Any]], Awaitable["EmbedResult"]]


class BoundLayer(Protocol):
    async def embed(self, inputs: Sequence[Any], is_tokens: bool, compute: Compute,
                    token_counts: Sequence[int] | None, *, variant: Variant = DEFAULT_VARIANT
                    ) -> tuple[EmbedResult, int]:
        """The vectors of ``inputs`` for ``variant`` and how many the layer answered itself;
        ``compute`` embeds (checked) whatever it did not. Answers of two variants never mix."""
        ...


class EmbedLayer(Protocol):
    def bind(self, route: ModelRoute, flags: frozenset[str], *, upstream_schema: OptionSchema,
             route_schema: OptionSchema) -> BoundLayer | None:
        """The layer for ``route`` (None: not on this route); the schemas declare which of the
        route's options shape its answers (``Option.shapes_output``)."""
        ...

    def counts_usage(self, flags: frozenset[str]) -> bool:
        """True while the layer is on: the router then counts every route's usage itself (its
        answers reach no upstream that could), so usage is the same count with it or without."""
        ...

    async def close(self) -> None: ...
