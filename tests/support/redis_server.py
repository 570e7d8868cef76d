"""A real redis-server on a loopback port for one test module: without persistence, or with an
append-only file (as production keeps quota counts) in its work folder, to be restarted on it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.support.processes import ServerProcess, free_port


def redis_binary() -> str | None:
    return os.environ.get("MAAS_REDIS_SERVER") or shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def start_redis(workdir: Path, binary: str, *, port: int | None = None,
                aof: bool = False) -> tuple[ServerProcess, str]:
    """Start redis-server; return it and its URL once it answers PING. ``aof``: persist as the
    production limits Redis does (appendonly, fsync every second) in ``workdir``, where a restart
    on the same ``port`` and folder finds it."""
    import redis

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"]
    server = ServerProcess([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
                            "--dir", str(workdir)],
                           env=dict(os.environ), log_path=workdir / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    try:
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{server.log_text()[-2000:]}")
            try:
                if client.ping():
                    return server, url
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    server.kill()
                    raise TimeoutError(f"redis-server not ready:\n{server.log_text()[-2000:]}") from None
                time.sleep(0.05)
    finally:
        client.close()
