"""Bench-only adapter types: ``fixed`` answers every embedding at once with the same vector;
``paced`` is a model of fixed capacity.

``fixed`` isolates the router's own cost (HTTP server, request chain, JSON, metrics, logs) from
any upstream hop; the profile of the hot path uses it. ``paced`` takes batches like an
in-process model (one at a time, ``max_batch_size`` inputs) and spends ``ms_per_input`` per input
asleep, not computing, so the multi-tenant figures measure the scheduler rather than how the load
generator and a model share two cores. Run a router with them through
``python -m bench.fixed_adapter --port N`` (``maas serve`` plus this plugin).
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from core import hookimpl
from core.adapters import Adapter, Batching, EmbedResult, RerankResult
from core.options import Option, OptionSchema

DIM = 384


class FixedAdapter(Adapter):
    # Like the HTTP adapters' upstreams, it reports usage (a fixed count per input), so the router
    # runs the same path as in front of the fixed upstream: no tokenizing of its own.
    reports_usage = True
    TOKENS_PER_INPUT = 8

    def __init__(self, upstream, context) -> None:
        super().__init__(upstream, context)
        self.row = (np.arange(DIM, dtype=np.float32) % 101) / 1000

    async def embed(self, route, inputs, call) -> EmbedResult:
        return EmbedResult(np.broadcast_to(self.row, (len(inputs), DIM)),
                           prompt_tokens=self.TOKENS_PER_INPUT * len(inputs))

    async def rerank(self, route, query, documents, call) -> RerankResult:
        return RerankResult([1.0 / (1 + i) for i in range(len(documents))],
                            prompt_tokens=self.TOKENS_PER_INPUT * len(documents))



class PacedAdapter(FixedAdapter):
    upstream_options = OptionSchema([
        Option("ms_per_input", float, 2.0, "model time per input", minimum=0),
        Option("max_batch_size", int, 32, "inputs per batch", minimum=1),
    ])

    def batching(self, route) -> Batching:
        return Batching(max_in_flight=1, split=True, max_batch_size=int(self.config["max_batch_size"]),
                        max_wait_s=0.002)

    async def embed(self, route, inputs, call) -> EmbedResult:
        await asyncio.sleep(len(inputs) * float(self.config["ms_per_input"]) / 1000)
        return await super().embed(route, inputs, call)


@hookimpl
def register_adapters(register):
    register("fixed", FixedAdapter)
    register("paced", PacedAdapter)


def main() -> int:
    """``maas serve`` (its serving path: drain, cancellation, timeouts) with these adapters added."""
    import sys

    from core.cli import serve_router
    from core.config import Settings
    from core.plugins import build_plugin_manager

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    pm = build_plugin_manager(Settings.from_env().disabled_plugins)
    pm.register(sys.modules[__name__], name="bench.fixed_adapter")
    return serve_router(args.host, args.port, pm=pm)


if __name__ == "__main__":
    raise SystemExit(main())
