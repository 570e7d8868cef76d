"""Quadrate MAAS Embeddings: the gateway core.

Writing a plugin takes one import::

    from core import hookimpl

    class MyAdapter:
        def __init__(self, upstream, context): ...
        async def embed(self, route, inputs, flow): ...
        async def rerank(self, route, query, documents, flow): ...
        async def close(self): ...

    @hookimpl
    def register_adapters(register):
        register("my-type", MyAdapter)

and an entry point in the plugin's ``pyproject.toml``::

    [project.entry-points.maas]
    my_plugin = "my_plugin"

Hooks are documented in ``core.hookspecs``.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("maas")

__all__ = ["hookimpl"]
