"""The ``maas`` command: serve the router, serve the rerank service, check configs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.errors import ConfigError
from core.version import version

FILES = {"routing.yaml": "routing_path", "auth.yaml": "auth_path", "rate_limits.yaml": "rate_limits_path"}

if TYPE_CHECKING:
    import pluggy


def _serve(args: argparse.Namespace) -> int:
    return serve_router(args.host, args.port, shutdown_timeout=args.shutdown_timeout)


def port_taken(host: str, port: int, setting: str = "--port (PORT for scripts/run.sh)") -> str | None:
    """A one-line reason when ``host:port`` cannot be listened on, before anything loads."""
    if not 0 < port < 65536:
        return f"port {port} is not a TCP port (1-65535); pick another with {setting}"
    try:
        with socket.create_server((host, port), reuse_port=False):
            return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is in use (another process listens there); pick another with {setting}"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def serve_router(host: str, port: int, *, shutdown_timeout: float = 30.0,
                 pm: pluggy.PluginManager | None = None) -> int:
    """``maas serve``: the router until SIGTERM, then its drain. ``pm`` is a plugin manager to use
    instead of the default one (the benchmarks add their bench-only adapters so)."""
    from core.app import create_app
    from core.logs import setup_logging

    taken = port_taken(host, port)
    if taken is not None:
        print(f"maas: {taken}", file=sys.stderr)
        return 1
    # Third-party progress bars (model loading) would break the one-JSON-object-per-line log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        _serving_runtime()
        app = create_app(settings, pm)
    except ConfigError as exc:
        print(f"maas: {exc}", file=sys.stderr)
        return 1
    from core.app import HEAP
    from core.heap import HeapFreeze
    from core.http import GATEWAY, metrics_app
    from core.lane import api_listen
    from core.serving import serve_until_stopped

    app[HEAP] = HeapFreeze(app[GATEWAY])  # the long-lived heap out of the collector's way

    beside = []
    if settings.metrics_port is not None:  # /metrics there only: the API port shows no key names
        taken = (f"ROUTER_METRICS_PORT is the API's port {port}; pick another" if settings.metrics_port == port
                 else port_taken(host, settings.metrics_port, "ROUTER_METRICS_PORT"))
        if taken is not None:
            print(f"maas: {taken}", file=sys.stderr)
            return 1
        beside.append((metrics_app(app[GATEWAY]), settings.metrics_port))

    def drain() -> bool:
        app[GATEWAY].draining = True  # /health/ready answers 503
        return app[GATEWAY].snapshot is not None  # it served: balancers need the drain to notice

    asyncio.run(serve_until_stopped(app, host, port, drain_s=settings.drain_s, shutdown_timeout=shutdown_timeout,
                                    on_drain=drain, header_timeout_s=settings.header_timeout_s, beside=beside,
                                    listen=api_listen(settings)))
    if app[GATEWAY].snapshot is None:  # stopped because the first config never loaded
        print("maas: the configuration failed to load (see the log)", file=sys.stderr)
        return 1
    return 0


def _serve_rerank(args: argparse.Namespace) -> int:
    from services.rerank.service import run

    _serving_runtime()
    return run(args.host, args.port)


def with_paths(settings: Settings, paths: list[str]) -> Settings:
    """``settings`` reading the config files named on the command line: a folder holding them,
    or files named routing.yaml, auth.yaml, rate_limits.yaml (the others stay as configured)."""
    chosen: dict[str, Any] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            chosen.update({field: str(path / name) for name, field in FILES.items()})
        elif path.name in FILES:
            chosen[FILES[path.name]] = str(path)
        else:
            raise ConfigError(f"{raw}: name a folder holding the config files, or a file named "
                              f"{', '.join(FILES)}")
    return dataclasses.replace(settings, **chosen)


def _check_config(args: argparse.Namespace) -> int:
    from core.gateway import Gateway

    if args.fields:
        from core.fields import field_table

        print(field_table(Gateway(Settings.from_env())), end="")
        return 0
    try:
        settings = with_paths(Settings.from_env(), args.paths)
        gateway = Gateway(settings)
        files = gateway.validate()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    findings = gateway.findings(files)
    for finding in findings:
        print(f"error: {finding}", file=sys.stderr)
    if findings:
        return 1
    for path in (settings.routing_path, settings.auth_path, settings.rate_limits_path):
        print(f"ok: {path}")
    return 0


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion for ``maas``, from the parser itself (so it lists what the parser takes)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    cases = []
    for name, command in sub.choices.items():
        words = " ".join(o for a in command._actions for o in a.option_strings)  # noqa: SLF001
        cases.append(f"    {name}) words='{words}' ;;")
    commands = " ".join(sub.choices)
    return "\n".join([
        "# bash completion for maas: eval \"$(maas completion)\" (or save it under /etc/bash_completion.d/)",
        "_maas() {",
        '  local cur=${COMP_WORDS[COMP_CWORD]} words',
        "  if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"    COMPREPLY=($(compgen -W '{commands} --version --help' -- \"$cur\")); return",
        "  fi",
        '  case "${COMP_WORDS[1]}" in',
        *cases,
        "    *) words='' ;;",
        "  esac",
        '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        '  [ "${COMP_WORDS[1]}" = check-config ] && [[ $cur != -* ]] && COMPREPLY+=($(compgen -f -- "$cur"))',
        "}",
        "complete -F _maas maas",
        ""])


# The event loop and an in-process model's thread share the GIL, and a thread that wants it waits
# up to the switch interval for the holder to let go (CPython's default: 5 ms). The model's thread
# wants it back after each of the few dozen operations of a forward pass; with the loop busy
# (answers, the next requests, a bulk job's lines) it waited up to 5 ms each time, and a bulk job
# ran at 0.73-0.81x of the bare model. At 0.5 ms: 0.93x (docs/benchmarks.md, bulk jobs). A process
# with one Python thread at work (an HTTP upstream) never hands the GIL over, whatever the interval.
GIL_SWITCH_S = 0.0005


def _serving_runtime() -> None:
    """The process's runtime for serving: uvloop, and the GIL handed over within ``GIL_SWITCH_S``."""
    sys.setswitchinterval(GIL_SWITCH_S)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    uvloop.install()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maas", description="Quadrate MAAS Embeddings gateway")
    parser.add_argument("--version", action="version", version=f"maas {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    helpful = argparse.ArgumentDefaultsHelpFormatter
    serve = sub.add_parser("serve", help="run the router (OpenAI-compatible API)", formatter_class=helpful,
                           description="Run the router. 8000 is the container's port; scripts/run.sh (the quick "
                                       "start) listens on 127.0.0.1:8085, the guide's host port.")
    serve.add_argument("--host", default="0.0.0.0",  # noqa: S104 - a container's server listens on all
                       help="address to listen on (127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--shutdown-timeout", type=float, default=30.0,
                       help="seconds requests in flight get to finish after the drain")
    serve.set_defaults(func=_serve)
    rr = sub.add_parser("serve-rerank", help="run the rerank service", formatter_class=helpful)
    rr.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104 - as above
    rr.add_argument("--port", type=int, default=9002, help="port to listen on")
    rr.set_defaults(func=_serve_rerank)
    check = sub.add_parser("check-config", formatter_class=helpful,
                           help="validate the config files: every field, models on disk, keys' model names",
                           description="Validate the config files without loading a model: every field (file "
                                       "and line on error), every local model resolvable on this machine, every "
                                       "model a key names present in routing.yaml. Exits 1 on any finding.")
    check.add_argument("paths", nargs="*", metavar="PATH",
                       help="a folder holding routing.yaml, auth.yaml and rate_limits.yaml, or those files "
                            "(default: ROUTER_ROUTING_PATH, ROUTER_AUTH_PATH, ROUTER_RATE_LIMITS_PATH)")
    check.add_argument("--fields", action="store_true",
                       help="print the table of every routing.yaml field (Markdown) instead")
    check.set_defaults(func=_check_config)
    completion = sub.add_parser("completion", help="print a bash completion for maas",
                                description='Print a bash completion script: eval "$(maas completion)".')
    completion.set_defaults(func=lambda _args: print(completion_script(parser), end="") or 0)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
