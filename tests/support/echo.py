"""A fast, deterministic adapter type ``echo`` for tests that exercise the gateway, not a model.

Embeds each text as [len(text), 1, 0, ...] and scores documents by length. ``install_plugin``
makes a router subprocess load it through the ``maas`` entry-point group, as a third-party
plugin package would be loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core import hookimpl
from core.adapters import Adapter, EmbedResult, RerankResult
from core.options import Option, OptionSchema


class EchoAdapter(Adapter):
    upstream_options = OptionSchema([Option("dim", int, 4, "vector width", minimum=2)])

    def __init__(self, upstream, context):
        super().__init__(upstream, context)
        self.dim = self.config["dim"]
        self.closed = False

    async def embed(self, route, inputs, call):
        vecs = np.zeros((len(inputs), self.dim), dtype=np.float32)
        for i, text in enumerate(inputs):
            vecs[i, 0], vecs[i, 1] = len(text), 1.0
        return EmbedResult(vecs)

    async def rerank(self, route, query, documents, call):
        return RerankResult([float(len(d)) for d in documents])

    async def close(self):
        self.closed = True


@hookimpl
def register_adapters(register):
    register("echo", EchoAdapter)


def install_plugin(site: Path) -> Path:
    """Write a distribution's metadata into ``site`` so that, with ``site`` on PYTHONPATH,
    ``importlib.metadata`` finds the ``maas`` entry point pointing at this module."""
    dist = site / "maas_echo_test-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: maas-echo-test\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[maas]\necho = tests.support.echo\n")
    return site
