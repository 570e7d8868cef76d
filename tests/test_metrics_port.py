"""``ROUTER_METRICS_PORT``: a real router serves ``/metrics`` on that port only, so the API port never
shows key names or usage, and the drain is what it was."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.processes import ROOT, base_env, free_port, start_router

KEY = "metrics-port-key-0123456789"


def _configs(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "e", "upstream": {"type": "echo"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [{"name": "search-team", "key": KEY}]})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 100000, "refill_rate": 100000}})
    return configs


def test_metrics_are_served_on_their_own_port_only_and_through_the_drain(tmp_path):
    metrics_port = free_port()
    site = echo.install_plugin(tmp_path / "site")
    server, url = start_router(_configs(tmp_path), tmp_path / "router.log", ROUTER_DRAIN_SECONDS="2",
                               ROUTER_METRICS_PORT=str(metrics_port), PYTHONPATH=f"{site}:{ROOT}")
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as api, httpx.Client(base_url=metrics_url, timeout=10) as side:
            answer = api.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers={"X-API-Key": KEY})
            assert answer.status_code == 200
            hidden = api.get("/metrics")
            assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
            assert "search-team" not in hidden.text
            shown = side.get("/metrics")
            assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/plain")
            assert 'maas_usage_tokens_total{key="search-team",model="e"}' in shown.text
            assert KEY not in shown.text
            # the metrics port serves nothing else
            assert side.post("/v1/embeddings", json={"model": "e", "input": "x"},
                             headers={"X-API-Key": KEY}).status_code == 404
            assert side.get("/openapi.json").status_code == 404

            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.4)
            ready = api.get("/health/ready")
            assert ready.status_code == 503 and ready.json() == {"status": "draining"}
            during = api.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers={"X-API-Key": KEY})
            assert during.status_code == 200 and during.headers["connection"] == "close"
            assert side.get("/metrics").status_code == 200  # scraped until the process stops
        assert server.proc.wait(15) == 0
        assert '"stopped"' in server.log_text()
    finally:
        server.stop()


def test_without_it_metrics_stay_on_the_api_port(tmp_path):
    site = echo.install_plugin(tmp_path / "site")
    server, url = start_router(_configs(tmp_path), tmp_path / "router.log", PYTHONPATH=f"{site}:{ROOT}")
    try:
        assert httpx.get(url + "/metrics", timeout=10).status_code == 200
    finally:
        server.stop()


def test_the_api_port_or_a_port_in_use_is_refused_at_start(tmp_path):
    configs = _configs(tmp_path)
    port = free_port()
    env = base_env(ROUTER_ROUTING_PATH=str(configs / "routing.yaml"), ROUTER_AUTH_PATH=str(configs / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(configs / "rate_limits.yaml"), ROUTER_METRICS_PORT=str(port))
    argv = [sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    same = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert same.returncode == 1 and "ROUTER_METRICS_PORT is the API's port" in same.stderr
    env["ROUTER_METRICS_PORT"] = "70000"
    argv[-1] = str(free_port())
    bad = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not a TCP port" in bad.stderr and "ROUTER_METRICS_PORT" in bad.stderr
