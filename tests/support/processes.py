"""Start real servers (router, rerank service, Infinity, Redis, Nginx) as subprocesses for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    env.update(extra)
    return env


class ServerProcess:
    """A server subprocess whose combined output goes to a log file the test can read."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 120.0, status: int = 200) -> float:
        """Poll ``url`` until it answers ``status``; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:3]} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == status:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{url} not ready after {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_router(config_dir: Path, log_path: Path, *, port: int | None = None, **env: str) -> tuple[ServerProcess, str]:
    """Run ``maas serve`` on the configs in ``config_dir``; return it and its base URL once ready."""
    port = port or free_port()
    full_env = base_env(
        ROUTER_ROUTING_PATH=str(config_dir / "routing.yaml"),
        ROUTER_AUTH_PATH=str(config_dir / "auth.yaml"),
        ROUTER_RATE_LIMITS_PATH=str(config_dir / "rate_limits.yaml"),
        **env,
    )
    server = ServerProcess([sys.executable, "-m", "core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                           env=full_env, log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(url + "/health/ready")
    except Exception:
        server.kill()
        raise
    return server, url


def wait_front_routes(name: str, process: ServerProcess, url: str, context, timeout: float = 30.0) -> bool:
    """Until a router replica answers ``/health/ready`` through a front at ``url`` (its health
    checks ran); False after ``timeout``. A front that exits is a RuntimeError with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.proc.returncode}:\n{process.log_text()}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2, context=context) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False
