"""A layer a plugin puts between a served model's callers and its scheduler: the embedding cache.

An ``EmbedLayer`` is registered once (``register_embed_layers``) and bound per served model:
``bind`` returns the route's ``BoundLayer``, or None when it does not apply to that route under
the snapshot's flags. A bound layer answers what it can itself and asks ``compute`` (the
scheduler, the width guard, the adapter) for the rest, returning how many inputs it answered.
It is told the whole call (``ModelCall``): whose it is (a cache keeps each tenant's entries
apart), its token counts and the request-level fields that shape the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.adapters import EmbedResult
    from core.config import ModelRoute
    from core.options import OptionSchema
    from core.served.call import ModelCall

Compute = Callable[[list[Any]], Awaitable["EmbedResult"]]


class BoundLayer(Protocol):
    async def embed(self, inputs: Sequence[Any], is_tokens: bool, compute: Compute,
                    call: ModelCall) -> tuple[EmbedResult, int]:
        """The vectors of ``inputs`` for ``call`` and how many the layer answered itself;
        ``compute`` embeds (checked) whatever it did not."""
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
