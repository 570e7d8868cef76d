"""SIGTERM drains a real router process: it keeps serving API requests (kept-alive connections
included) while readiness answers 503 and every answer says Connection: close, lets requests in
flight finish, then exits cleanly."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.processes import ROOT, start_router


def test_sigterm_drains_without_failing_a_request(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "e", "upstream": {"type": "echo"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 100000, "refill_rate": 100000}})
    site = echo.install_plugin(tmp_path / "site")
    server, url = start_router(configs, tmp_path / "router.log", ROUTER_DRAIN_SECONDS="2",
                               PYTHONPATH=f"{site}:{ROOT}")
    body = {"model": "e", "input": "x"}
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:  # one kept-alive client, sending back to back through the whole drain
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                try:
                    resp = client.post("/v1/embeddings", json=body)
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                    served[0] += 1
                except httpx.HTTPError as exc:
                    if server.proc.poll() is None and not stop.is_set():  # a refused connect after exit is fine
                        failures.append(repr(exc))
                    return

    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/v1/embeddings", json=body).status_code == 200
            worker = threading.Thread(target=load)
            worker.start()
            time.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and ready.json() == {"status": "draining"}
            during = client.post("/v1/embeddings", json=body)
            assert during.status_code == 200 and during.headers["connection"] == "close"
            before = served[0]
            time.sleep(1.0)
            assert served[0] > before  # still serving, one new connection per answer
            stop.set()
            worker.join(10)
        assert server.proc.wait(15) == 0
        assert not failures, failures[:5]
        log = server.log_text()
        assert "draining" in log and '"stopped"' in log
    finally:
        stop.set()
        server.stop()


def test_a_first_config_that_fails_to_load_exits_1_without_draining(tmp_path):
    import subprocess
    import sys

    from tests.support.processes import base_env, free_port

    configs = tmp_path / "configs"
    configs.mkdir()
    # valid YAML, but the model cannot load: the gateway starts, then stops on the failed load
    write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "m", "served_name": str(tmp_path / "no-model"),
                                                          "upstream": {"type": "local"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(configs / "rate_limits.yaml", {})
    env = base_env(ROUTER_ROUTING_PATH=str(configs / "routing.yaml"), ROUTER_AUTH_PATH=str(configs / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(configs / "rate_limits.yaml"), ROUTER_DRAIN_SECONDS="30")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "failed to load" in result.stderr
    assert time.monotonic() - started < 30  # no 30 s drain for a process that never served
