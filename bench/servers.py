"""The servers a benchmark runs against, each a real process on a free loopback port.

Reuses the test suite's process helpers (tests/support/processes.py): same environment,
same readiness polling, same clean stop of the whole process group.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tests.support.processes import ROOT, ServerProcess, base_env, free_port
from tests.support.upstreams import infinity_venv, start_infinity, start_rerank_service

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
API_KEY = "sk-bench-local"  # a throwaway key for loopback-only servers
EMBED_DIM = 384


def venv_python(name: str, env_var: str) -> Path:
    """A tool's own venv at the repo root (``.venv-litellm``), or the python named by $env_var."""
    override = os.environ.get(env_var)
    return Path(override) if override else ROOT / name / "bin" / "python"


def fixed_embedding_body(n: int = 1, dim: int = EMBED_DIM, encoding: str = "base64") -> bytes:
    """An OpenAI embeddings response with ``n`` vectors, as base64 float32 (what Infinity's adapter and
    the OpenAI SDK ask for by default) or as JSON floats."""
    vec = np.array([((i * 37) % 101) / 1000.0 for i in range(dim)], dtype="<f4")
    embedding = base64.b64encode(vec.tobytes()).decode() if encoding == "base64" else vec.tolist()
    data = [{"object": "embedding", "index": i, "embedding": embedding} for i in range(n)]
    return json.dumps({"object": "list", "data": data, "model": "fixed",
                       "usage": {"prompt_tokens": 4 * n, "total_tokens": 4 * n}},
                      separators=(",", ":")).encode()


@dataclass
class Server:
    name: str
    url: str
    proc: ServerProcess

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def stop(self) -> None:
        self.proc.stop()


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def _nginx(work: Path, name: str, server_block: str) -> Server:
    d = work / name
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    # One worker, as the router and LiteLLM get one process: the comparison is per process.
    conf.write_text(f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  keepalive_requests 1000000;
  {server_block}
}}
""")
    proc = ServerProcess([NGINX, "-p", str(d), "-c", str(conf), "-g", "daemon off;"], env=base_env(),
                         log_path=d / "stdout.log")
    return Server(name, "", proc)


def fixed_upstream(work: Path) -> Server:
    """Nginx answering every embeddings call at once with the same one-vector body (base64)."""
    port = free_port()
    body = fixed_embedding_body().decode()
    models = json.dumps({"object": "list", "data": [{"id": "fixed", "object": "model"}]})
    server = _nginx(work, "fixed-upstream", f"""server {{
    listen 127.0.0.1:{port};
    default_type application/json;
    location = /health {{ return 200 '{{"unix":0}}'; }}
    location = /v1/models {{ return 200 '{models}'; }}
    location = /models {{ return 200 '{models}'; }}
    location / {{ return 200 '{body}'; }}
  }}""")
    server.url = f"http://127.0.0.1:{port}"
    server.proc.wait_http(server.url + "/health", timeout=20)
    return server


def nginx_proxy(work: Path, upstream_url: str) -> Server:
    """One Nginx hop in front of ``upstream_url`` with keep-alive to it, as in production."""
    port = free_port()
    target = upstream_url.removeprefix("http://")
    server = _nginx(work, "nginx-proxy", f"""upstream target {{ server {target}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://target; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Request-ID $request_id;
    }}
  }}""")
    server.url = f"http://127.0.0.1:{port}"
    server.proc.wait_http(server.url + "/health", timeout=20)
    return server


def passthrough(work: Path, upstream_url: str, mode: str) -> Server:
    """The bare aiohttp + uvloop proxy (bench/passthrough.py), ``raw`` or ``json``."""
    port = free_port()
    (work / f"passthrough-{mode}").mkdir(parents=True, exist_ok=True)
    proc = ServerProcess([sys.executable, "-m", "bench.passthrough", "--port", str(port), "--upstream",
                          upstream_url, "--mode", mode], env=base_env(),
                         log_path=work / f"passthrough-{mode}" / "out.log")
    server = Server(f"aiohttp {mode}", f"http://127.0.0.1:{port}", proc)
    _wait_or_stop(server, "/health", 30)
    return server


def echo_upstream(work: Path) -> Server:
    """bench/echo_upstream.py: n vectors for n inputs, calls counted at /stats."""
    port = free_port()
    (work / "echo-upstream").mkdir(parents=True, exist_ok=True)
    proc = ServerProcess([sys.executable, "-m", "bench.echo_upstream", "--port", str(port)], env=base_env(),
                         log_path=work / "echo-upstream" / "out.log")
    server = Server("echo upstream", f"http://127.0.0.1:{port}", proc)
    _wait_or_stop(server, "/health", 30)
    return server


def write_router_configs(dest: Path, routing: dict, *, api_keys: list[str] | None = None) -> Path:
    """routing.yaml as given; auth on (one key) and a rate limit too large to bite, unless told."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "routing.yaml").write_text(yaml.safe_dump(routing, sort_keys=False))
    keys = [API_KEY] if api_keys is None else api_keys
    (dest / "auth.yaml").write_text(yaml.safe_dump(
        {"api_keys": keys, "allow_anonymous_without_api_keys": not keys}))
    huge = {"capacity": 10_000_000, "refill_rate": 10_000_000}
    (dest / "rate_limits.yaml").write_text(yaml.safe_dump(
        {"default": huge, "anonymous": huge, "per_api_key": {}}))
    return dest


ROUTER = ("core.cli", "serve")
ROUTER_WITH_FIXED_ADAPTER = ("bench.fixed_adapter",)


def router(work: Path, name: str, routing: dict, *, api_keys: list[str] | None = None,
           timeout: float = 180, launcher: tuple[str, ...] = ROUTER, **env: str) -> Server:
    config_dir = write_router_configs(work / name / "configs", routing, api_keys=api_keys)
    port = free_port()
    full_env = base_env(ROUTER_ROUTING_PATH=str(config_dir / "routing.yaml"),
                        ROUTER_AUTH_PATH=str(config_dir / "auth.yaml"),
                        ROUTER_RATE_LIMITS_PATH=str(config_dir / "rate_limits.yaml"), **env)
    proc = ServerProcess([sys.executable, "-m", *launcher, "--host", "127.0.0.1", "--port", str(port)],
                         env=full_env, log_path=work / name / "router.log")
    server = Server(name, f"http://127.0.0.1:{port}", proc)
    _wait_or_stop(server, "/health/ready", timeout)
    return server


def rerank_service(work: Path, name: str, **env: str) -> Server:
    (work / name).mkdir(parents=True, exist_ok=True)
    proc, url = start_rerank_service(work / name / "rerank.log", **env)
    return Server(name, url, proc)


def litellm_proxy(work: Path, upstream_url: str, timeout: float = 120) -> Server:
    """LiteLLM's proxy, one worker, the fixed upstream as an OpenAI-compatible embedding model."""
    d = work / "litellm"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump({
        "model_list": [{"model_name": "fixed", "litellm_params": {
            "model": "openai/fixed", "api_base": upstream_url + "/v1", "api_key": "unused"}}],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": API_KEY},
    }))
    port = free_port()
    exe = venv_python(".venv-litellm", "BENCH_LITELLM_PYTHON").parent / "litellm"
    env = base_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    proc = ServerProcess([str(exe), "--config", str(d / "config.yaml"), "--host", "127.0.0.1",
                          "--port", str(port), "--num_workers", "1"], env=env, log_path=d / "litellm.log")
    server = Server("litellm", f"http://127.0.0.1:{port}", proc)
    _wait_or_stop(server, "/health/liveliness", timeout)
    return server


def infinity(work: Path, served_name: str) -> Server:
    """infinity_emb serving the packaged MiniLM (the test suite's launcher: its own venv, no PYTHONPATH)."""
    (work / "infinity").mkdir(parents=True, exist_ok=True)
    proc, url = start_infinity(work / "infinity" / "infinity.log", served_name=served_name)
    return Server("infinity", url, proc)


def _wait_or_stop(server: Server, path: str, timeout: float) -> None:
    try:
        server.proc.wait_http(server.url + path, timeout=timeout)
    except Exception:
        server.proc.kill()
        raise


def has_infinity() -> bool:
    return (infinity_venv() / "bin" / "infinity_emb").exists()


def has_litellm() -> bool:
    return (venv_python(".venv-litellm", "BENCH_LITELLM_PYTHON").parent / "litellm").exists()


def adapter_types() -> set[str]:
    """Upstream types this checkout can route to (built-ins and installed plugins)."""
    from core.plugins import build_plugin_manager

    found: set[str] = set()
    build_plugin_manager().hook.register_adapters(register=lambda name, factory: found.add(name))
    return found
