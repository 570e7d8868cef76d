"""Quadrate MAAS Embeddings: the gateway core.

Writing a plugin takes one import for the hooks, and the base class of what it contributes::

    import numpy as np

    from core import hookimpl
    from core.adapters import Adapter, EmbedResult


    class ConstantAdapter(Adapter):
        kinds = frozenset({"embeddings"})

        async def embed(self, route, inputs, call):
            # one float32 row per input, in input order; call.request_id, call.deadline, call.is_tokens
            return EmbedResult(vectors=np.ones((len(inputs), 8), dtype=np.float32) / np.sqrt(8))


    @hookimpl
    def register_adapters(register):
        register("constant", ConstantAdapter)

and an entry point in the plugin's ``pyproject.toml``::

    [project.entry-points.maas]
    my_plugin = "my_plugin"

A route then names the type: ``upstream: {type: constant}``. Hooks (adapters, stages, codecs,
route options, flags, lifecycle) are documented in ``core.hookspecs``; DEVELOPER.md walks
through a whole plugin.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("maas")

__all__ = ["hookimpl"]
