"""Every deployment artefact serves and scrapes ``/metrics`` on the metrics port (8001,
``ROUTER_METRICS_PORT``), never on the API port: the chart (annotations, Service, ServiceMonitor),
the plain manifests, the compose files and the Prometheus config agree on one port."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.deploy import MANIFESTS, compose_env, load_compose
from tests.support.processes import ROOT
from tests.test_deploy_helm import by_kind, render, render_values

METRICS_PORT = 8001
COMPOSE = ROOT / "deploy" / "compose"
PROMETHEUS = ROOT / "deploy" / "monitoring" / "prometheus.yml"


def _scraped(deployment: dict, services: dict) -> None:
    """The pod is annotated for the metrics port, its container listens there, and the Service
    names that port ``metrics`` apart from the API's ``http``."""
    pod = deployment["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    container = pod["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "metrics": METRICS_PORT}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROUTER_METRICS_PORT"] == str(METRICS_PORT)
    ports = {p["name"]: p for p in services["router"]["spec"]["ports"]}
    assert ports["metrics"]["port"] == METRICS_PORT and ports["metrics"]["targetPort"] == "metrics"
    assert ports["http"]["targetPort"] == "http"


def test_the_chart_scrapes_the_metrics_port():
    docs = render("router")
    _scraped(by_kind(docs, "Deployment")["router"], by_kind(docs, "Service"))
    assert not by_kind(docs, "ServiceMonitor")  # off unless asked: it needs the Operator's CRD


def test_the_charts_service_monitor_scrapes_the_metrics_port():
    docs = render_values("router", {"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s",
                                                                   "labels": {"release": "kps"}}}})
    monitor = by_kind(docs, "ServiceMonitor")["router"]
    service = by_kind(docs, "Service")["router"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_another_port_moves_every_part_and_annotations_can_be_added():
    docs = render_values("router", {"metrics": {"port": 9464}, "podAnnotations": {"team": "search"}})
    pod = by_kind(docs, "Deployment")["router"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    assert pod["metadata"]["annotations"]["team"] == "search"
    assert {"name": "ROUTER_METRICS_PORT", "value": "9464"} in pod["spec"]["containers"][0]["env"]
    assert {"name": "metrics", "containerPort": 9464} in pod["spec"]["containers"][0]["ports"]


def test_the_manifests_scrape_the_metrics_port():
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "router.yaml").read_text()) if d]
    _scraped(by_kind(docs, "Deployment")["router"], by_kind(docs, "Service"))


def test_compose_routers_serve_metrics_on_the_port_prometheus_scrapes():
    production = load_compose(COMPOSE / "docker-compose.production.yml")["services"]
    routers = {n: s for n, s in production.items() if "maas-router" in s.get("image", "")}
    assert routers
    for router in routers.values():
        assert compose_env(router)["ROUTER_METRICS_PORT"] == str(METRICS_PORT)
        assert str(METRICS_PORT) in router["expose"] and not router.get("ports")  # inside the network only
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:{METRICS_PORT}" for name in routers}
    quick = load_compose(COMPOSE / "docker-compose.yml")["services"]["router"]
    assert compose_env(quick)["ROUTER_METRICS_PORT"] == str(METRICS_PORT)
    assert f"127.0.0.1:{METRICS_PORT}:{METRICS_PORT}" in quick["ports"]  # the host's loopback only


def test_no_front_routes_to_the_metrics_port():
    for path in (ROOT / "deploy").rglob("*"):
        if path.suffix in (".conf", ".yml", ".yaml") and "monitoring" not in path.parts and "compose" not in path.parts:
            text = path.read_text()
            assert not re.search(rf"router\w*:{METRICS_PORT}\b", text), path
    for name in ("router.yaml",):
        assert f"port: {METRICS_PORT}" in (MANIFESTS / name).read_text()


def test_promtool_accepts_the_prometheus_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian's prometheus package; scripts/bootstrap.sh test installs it)")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
