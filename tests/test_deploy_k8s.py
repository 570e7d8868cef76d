"""Helm charts and plain manifests, checked statically (no cluster or helm binary here).

Manifests are validated against the Kubernetes OpenAPI schemas shipped by kubernetes-validate;
Helm templates are Go templates, so for them the checks are: every ``.Values`` path exists,
the objects, probes, env names and commands are the ones the code serves.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy import (
    DEPLOY,
    HELM,
    check_maas_argv,
    containers,
    helm_charts,
    lookup,
    manifest_docs,
    template_env_names,
    values_paths,
)

K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CHARTS = {"infinity-embed", "rerank", "router"}


def _values(chart):
    return yaml.safe_load((chart / "values.yaml").read_text())


def _templates(chart) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((chart / "templates").iterdir())}


def test_the_three_charts_exist_with_valid_chart_yaml():
    charts = helm_charts()
    assert {c.name for c in charts} == CHARTS
    for chart in charts:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert meta["apiVersion"] == "v2" and meta["name"] == chart.name
        assert meta["type"] == "application" and meta["version"].count(".") == 2
        assert isinstance(_values(chart), dict)


@pytest.mark.parametrize("chart", helm_charts(), ids=lambda c: c.name)
def test_templates_reference_only_existing_values(chart):
    values = _values(chart)
    missing = {(name, ".".join(path)) for name, text in _templates(chart).items()
               for path in values_paths(text) if not lookup(values, path)}
    assert not missing


def test_values_check_can_fail():
    assert not lookup({"image": {"tag": "x"}}, ("image", "repository"))
    assert list(values_paths("{{ .Values.image.repository }}")) == [("image", "repository")]


@pytest.mark.parametrize("chart", helm_charts(), ids=lambda c: c.name)
def test_chart_objects_and_probes(chart):
    templates = _templates(chart)
    kinds = {yaml_kind for text in templates.values() for yaml_kind in _kinds(text)}
    assert {"Deployment", "Service"} <= kinds
    deployment = templates["deployment.yaml"]
    if chart.name == "infinity-embed":
        assert "path: /health\n" in deployment  # Infinity's only health route
    else:
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
            block = deployment.split(f"{probe}:", 1)[1]
            assert f"path: {path}" in block.split("Probe:", 1)[0], probe
        assert "runAsNonRoot: true" in deployment


def _kinds(template: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in template.splitlines() if line.startswith("kind:")]


def test_router_chart_configs_and_secret_friendly_keys():
    chart = HELM / "router"
    values, templates = _values(chart), _templates(chart)
    assert "ConfigMap" in _kinds(templates["configmap.yaml"])
    assert "routing.yaml:" in templates["configmap.yaml"]
    # API keys never sit in the ConfigMap: auth.yaml and rate_limits.yaml come from a Secret,
    # the chart's own or an existing one.
    assert "auth.yaml" not in templates["configmap.yaml"]
    assert "kind: Secret" in templates["secret.yaml"] and "existingSecret" in templates["secret.yaml"]
    assert "secretKeyRef" in templates["deployment.yaml"]  # QWEN3_API_KEY
    assert "subPath:" not in templates["deployment.yaml"]  # subPath mounts never see updates
    configs = DEPLOY / "configs"
    assert yaml.safe_load(values["routing"]) == yaml.safe_load((configs / "routing.yaml").read_text())
    assert yaml.safe_load(values["access"]["auth"]) == yaml.safe_load((configs / "auth.yaml").read_text())
    assert yaml.safe_load(values["access"]["rateLimits"]) == yaml.safe_load((configs / "rate_limits.yaml").read_text())


@pytest.mark.parametrize("name", ["router", "rerank"])
def test_chart_commands_are_real_cli_commands(name):
    deployment = _templates(HELM / name)["deployment.yaml"]
    args_line = next(line for line in deployment.splitlines() if line.strip().startswith("args:"))
    check_maas_argv(yaml.safe_load(args_line.strip())["args"])


def test_infinity_chart_serves_the_routed_models():
    values = _values(HELM / "infinity-embed")
    routing = yaml.safe_load((DEPLOY / "configs" / "routing.yaml").read_text())
    served = {e["served_name"] for e in routing["embeddings"] if e["upstream"]["type"] == "infinity"}
    assert set(values["models"]) == served


MANIFESTS = manifest_docs()


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for _, d in MANIFESTS], ids=[f"{p.name}:{d['kind']}" for p, d in MANIFESTS])
def test_manifest_matches_the_kubernetes_schema(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_schema_check_can_fail():
    deployment = copy.deepcopy(next(d for _, d in MANIFESTS if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_manifests_are_the_stack():
    by_kind = {(d["kind"], d["metadata"]["name"]) for _, d in MANIFESTS}
    for name in CHARTS:
        assert ("Deployment", name) in by_kind and ("Service", name) in by_kind
    assert ("ConfigMap", "router-routing") in by_kind and ("Secret", "router-access") in by_kind
    for _, doc in MANIFESTS:
        assert "namespace" not in doc["metadata"], "applied with -n maas, as in the guide"
        for container in containers(doc):
            if doc["metadata"]["name"] not in ("infinity-embed", "redis"):
                check_maas_argv(container["args"])
                assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
                assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    configmap = next(d for _, d in MANIFESTS if d["kind"] == "ConfigMap")
    secret = next(d for _, d in MANIFESTS if d["kind"] == "Secret")
    configs = DEPLOY / "configs"
    assert yaml.safe_load(configmap["data"]["routing.yaml"]) == yaml.safe_load((configs / "routing.yaml").read_text())
    for key in ("auth.yaml", "rate_limits.yaml"):
        assert yaml.safe_load(secret["stringData"][key]) == yaml.safe_load((configs / key).read_text())


def test_every_router_replica_shares_one_redis():
    by_kind = {(d["kind"], d["metadata"]["name"]): d for _, d in MANIFESTS}
    assert ("Deployment", "redis") in by_kind and ("Service", "redis") in by_kind
    router = by_kind[("Deployment", "router")]
    assert router["spec"]["replicas"] > 1
    env = {e["name"]: e.get("value") for c in containers(router) for e in c["env"]}
    port = by_kind[("Service", "redis")]["spec"]["ports"][0]["port"]
    assert env["ROUTER_REDIS_URL"] == f"redis://redis:{port}/0"
    # the chart: a URL, or a Secret holding one (a password in it), becomes ROUTER_REDIS_URL
    template = _templates(HELM / "router")["deployment.yaml"]
    assert "ROUTER_REDIS_URL" in template and ".Values.redis.existingSecret" in template
    assert ".Values.redis.url" in template
    values = _values(HELM / "router")
    assert set(values["redis"]) == {"url", "existingSecret", "secretKey"}


def test_env_names_in_templates_are_found():
    names = template_env_names(_templates(HELM / "router")["deployment.yaml"])
    assert {"ROUTER_ROUTING_PATH", "QWEN3_API_KEY"} <= names
