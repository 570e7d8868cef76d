"""A bench-only adapter type ``fixed``: answers every embedding at once with the same vector.

It isolates the router's own cost (HTTP server, request chain, JSON, metrics, logs) from any
upstream hop; the profile of the hot path uses it. Run a router with it through
``python -m bench.fixed_adapter --port N`` (``maas serve`` plus this plugin).
"""

from __future__ import annotations

import argparse

import numpy as np

from core import hookimpl
from core.adapters import Adapter, EmbedResult, RerankResult

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



@hookimpl
def register_adapters(register):
    register("fixed", FixedAdapter)


def main() -> int:
    import sys

    from aiohttp import web

    from core.app import create_app
    from core.cli import _use_uvloop
    from core.config import Settings
    from core.logs import setup_logging
    from core.plugins import build_plugin_manager

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    _use_uvloop()
    pm = build_plugin_manager(settings.disabled_plugins)
    pm.register(sys.modules[__name__], name="bench.fixed_adapter")
    web.run_app(create_app(settings, pm), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
