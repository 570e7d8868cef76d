"""The ``maas`` command: serve the router, serve the rerank service, check configs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import ConfigError

if TYPE_CHECKING:
    import pluggy


def _serve(args: argparse.Namespace) -> int:
    return serve_router(args.host, args.port, shutdown_timeout=args.shutdown_timeout)


def serve_router(host: str, port: int, *, shutdown_timeout: float = 30.0,
                 pm: pluggy.PluginManager | None = None) -> int:
    """``maas serve``: the router until SIGTERM, then its drain. ``pm`` is a plugin manager to use
    instead of the default one (the benchmarks add their bench-only adapters so)."""
    from core.app import create_app
    from core.logs import setup_logging

    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        _use_uvloop()
        app = create_app(settings, pm)
    except ConfigError as exc:
        print(f"maas: {exc}", file=sys.stderr)
        return 1
    from core.http import GATEWAY
    from core.serving import serve_until_stopped

    def drain() -> bool:
        app[GATEWAY].draining = True  # /health/ready answers 503
        return app[GATEWAY].snapshot is not None  # it served: balancers need the drain to notice

    asyncio.run(serve_until_stopped(app, host, port, drain_s=settings.drain_s, shutdown_timeout=shutdown_timeout,
                                    on_drain=drain, header_timeout_s=settings.header_timeout_s))
    if app[GATEWAY].snapshot is None:  # stopped because the first config never loaded
        print("maas: the configuration failed to load (see the log)", file=sys.stderr)
        return 1
    return 0


def _serve_rerank(args: argparse.Namespace) -> int:
    from services.rerank.service import run

    _use_uvloop()
    return run(args.host, args.port)


def _check_config(args: argparse.Namespace) -> int:
    from core.gateway import Gateway

    if args.fields:
        from core.fields import field_table

        print(field_table(Gateway(Settings.from_env())), end="")
        return 0
    try:
        settings = Settings.from_env()
        Gateway(settings).validate()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in (settings.routing_path, settings.auth_path, settings.rate_limits_path):
        print(f"ok: {path}")
    return 0


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    uvloop.install()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maas", description="Quadrate MAAS Embeddings gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the router (OpenAI-compatible API)")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's server listens on all
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--shutdown-timeout", type=float, default=30.0)
    serve.set_defaults(func=_serve)
    rr = sub.add_parser("serve-rerank", help="run the rerank service")
    rr.add_argument("--host", default="0.0.0.0")  # noqa: S104 - as above
    rr.add_argument("--port", type=int, default=9002)
    rr.set_defaults(func=_serve_rerank)
    check = sub.add_parser("check-config", help="validate the three config files (ROUTER_*_PATH)")
    check.add_argument("--fields", action="store_true",
                       help="print the table of every routing.yaml field (Markdown) instead")
    check.set_defaults(func=_check_config)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
