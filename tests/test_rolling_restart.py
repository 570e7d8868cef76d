"""A rolling restart behind the shipped Nginx config fails no request.

Two routers (the fast ``echo`` adapter, so restarts are quick) behind Nginx over TLS, with
``proxy_next_upstream`` as shipped; clients on kept-alive connections send embeddings back to
back while each router in turn gets SIGTERM (it drains: serves on, readiness 503, Connection:
close), exits, and starts again on its port.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.nginx import make_test_ca, nginx_binary, start_nginx
from tests.support.processes import ROOT, free_port, start_router
from tests.support.traffic import ThreadedLoad

pytestmark = pytest.mark.nginx

if nginx_binary() is None:  # pragma: no cover - scripts/bootstrap.sh test installs nginx
    pytest.skip("nginx is not installed", allow_module_level=True)

CLIENTS = 4


def _configs(folder):
    folder.mkdir(parents=True)
    write_yaml(folder / "routing.yaml", {"embeddings": [{"model": "e", "upstream": {"type": "echo"}}]})
    write_yaml(folder / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(folder / "rate_limits.yaml", {"default": {"capacity": 10**6, "refill_rate": 10**6},
                                             "anonymous": {"capacity": 10**6, "refill_rate": 10**6}})
    return folder


def test_restarting_each_router_in_turn_fails_no_request(tmp_path, record_property):
    site = echo.install_plugin(tmp_path / "site")
    env = {"ROUTER_DRAIN_SECONDS": "1", "PYTHONPATH": f"{site}:{ROOT}"}
    configs = _configs(tmp_path / "configs")
    ports = [free_port(), free_port()]
    routers = [start_router(configs, tmp_path / f"router{i}.log", port=p, **env)[0] for i, p in enumerate(ports)]
    ca = make_test_ca(tmp_path / "tls")
    try:
        nginx = start_nginx(tmp_path / "nginx", [f"127.0.0.1:{p}" for p in ports], ca)
    except Exception:
        for r in routers:
            r.stop()
        raise

    def client() -> httpx.Client:
        return httpx.Client(base_url=nginx.url, verify=ca.ssl_context(), timeout=30)

    try:
        with ThreadedLoad(client, {"model": "e", "input": ["rolling", "restart"]}, CLIENTS) as load:
            time.sleep(0.5)
            for i, port in enumerate(ports):
                routers[i].stop()  # SIGTERM: drain, then exit
                routers[i] = start_router(configs, tmp_path / f"router{i}-restarted.log", port=port, **env)[0]
                time.sleep(0.5)  # both serve again before the next restart
        record_property("rolling_restart", {"sent": load.sent, "failed": len(load.failures)})
        print(f"rolling restart through nginx: {load.sent} requests sent, {len(load.failures)} failed")
        assert load.sent > 100
        assert not load.failures, load.failures[:5]
    finally:
        nginx.stop()
        for r in routers:
            r.stop()


def test_the_shipped_config_never_writes_off_a_restarting_replica():
    import re

    from tests.support.nginx import NGINX_CONF

    text = NGINX_CONF.read_text()
    servers = re.findall(r"^[ \t]*server (router\d+:8000[^;]*);$", text, re.M)
    assert len(servers) == 3 and all("max_fails=0" in s for s in servers), servers
    assert re.search(r"^[ \t]*proxy_next_upstream error non_idempotent;$", text, re.M)
