"""Helm charts and plain manifests, checked statically (no cluster or helm binary here).

Manifests are validated against the Kubernetes OpenAPI schemas shipped by kubernetes-validate;
for the Helm templates' text the checks are: every ``.Values`` path exists, the objects, probes,
env names and commands are the ones the code serves. test_deploy_helm.py renders the charts
with Helm itself and validates what they render.
"""

from __future__ import annotations

import copy
import re

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

K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CHARTS = {"infinity-embed", "rerank", "router"}
MANIFESTS_DIR = DEPLOY / "k8s" / "manifests"


def _values(chart):
    return yaml.safe_load((chart / "values.yaml").read_text())


def _templates(chart) -> dict[str, str]:
    """Template path under templates/ (``tests/test-connection.yaml`` for the helm test hook) → text."""
    folder = chart / "templates"
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    # The pod's security context comes from values (test_deploy_helm checks the rendered pods).
    assert "toYaml .Values.podSecurityContext" in deployment
    assert _values(chart)["podSecurityContext"]["runAsNonRoot"] is True


def _kinds(template: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in template.splitlines() if line.startswith("kind:")]


def test_router_chart_configs_and_secret_friendly_keys():
    chart = HELM / "router"
    values, templates = _values(chart), _templates(chart)
    assert "ConfigMap" in _kinds(templates["configmap.yaml"])
    assert "routing.yaml:" in templates["configmap.yaml"]
    assert "auth.yaml" not in templates["configmap.yaml"]
    # No key in values: the chart generates one into its own Secret (kept across upgrades with
    # lookup), or the operator names a Secret holding auth.yaml and rate_limits.yaml.
    assert "auth" not in values["access"]
    assert "kind: Secret" in templates["secret.yaml"] and "existingSecret" in templates["secret.yaml"]
    assert "lookup" in templates["secret.yaml"]
    assert "key_file:" in templates["access-configmap.yaml"]
    assert "secretKeyRef" in templates["deployment.yaml"]  # QWEN3_API_KEY
    assert "subPath:" not in templates["deployment.yaml"]  # subPath mounts never see updates
    # routing.yaml takes its upstreams from values (rendered and compared in test_deploy_helm)
    assert "tpl .Values.routing" in templates["configmap.yaml"] and "http://" not in values["routing"]
    configs = DEPLOY / "configs"
    production = yaml.safe_load((configs / "rate_limits.yaml").read_text())
    limits = yaml.safe_load(values["access"]["rateLimits"])
    assert {k: limits[k] for k in ("default", "anonymous")} == {k: production[k] for k in ("default", "anonymous")}


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
# The stack's own files; an Ingress someone adds beside them (ingress-traefik.yaml) is only
# schema-checked.
STACK = [(p, d) for p, d in MANIFESTS if p.name != "ingress-traefik.yaml"]


def _kubernetes_api(doc) -> bool:
    """Kubernetes' own API groups (core, apps, policy, *.k8s.io): kubernetes-validate has their
    schemas. A custom resource (a Traefik IngressRoute beside the stack) has none."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d for _, d in MANIFESTS if _kubernetes_api(d)],
                         ids=[f"{p.name}:{d['kind']}" for p, d in MANIFESTS if _kubernetes_api(d)])
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
    assert ("ConfigMap", "router-routing") in by_kind and ("ConfigMap", "router-access") in by_kind
    # No Secret is applied with the folder: the operator creates router-keys first (README).
    assert not [name for kind, name in by_kind if kind == "Secret"]
    for _, doc in STACK:
        assert "namespace" not in doc["metadata"], "applied with -n maas, as in the guide"
        for container in containers(doc):
            if doc["metadata"]["name"] not in ("infinity-embed", "redis"):
                check_maas_argv(container["args"])
                assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
                assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    configmaps = {d["metadata"]["name"]: d for _, d in MANIFESTS if d["kind"] == "ConfigMap"}
    configs = DEPLOY / "configs"
    routing = configmaps["router-routing"]["data"]["routing.yaml"]
    assert yaml.safe_load(routing) == yaml.safe_load((configs / "routing.yaml").read_text())
    access = configmaps["router-access"]["data"]
    assert yaml.safe_load(access["auth.yaml"]) == {
        "api_keys": [{"name": "production-1", "key_file": "/etc/maas/keys/production-1"},
                     {"name": "admin", "key_file": "/etc/maas/keys/admin"}],
        "allow_anonymous_without_api_keys": False}
    # the production limits, keyed by the keys' names
    assert yaml.safe_load(access["rate_limits.yaml"]) == yaml.safe_load((configs / "rate_limits.yaml").read_text())


def test_router_manifest_mounts_the_keys_the_readme_creates():
    router = next(d for _, d in MANIFESTS if d["kind"] == "Deployment" and d["metadata"]["name"] == "router")
    spec = router["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/etc/maas/keys"]]["secret"]["secretName"] == "router-keys"
    assert {"configMap": {"name": "router-access"}} in volumes[mounts["/app/configs"]]["projected"]["sources"]
    readme = (MANIFESTS_DIR / "README.md").read_text()
    create = readme.index("kubectl -n maas create secret generic router-keys")
    assert create < readme.index("kubectl apply -f deploy/k8s/manifests/")  # the Secret exists first
    literals = re.findall(r'--from-literal=([\w.-]+)="\$\(openssl rand -hex 24\)"', readme[create:])
    access = next(d for _, d in MANIFESTS if d["metadata"]["name"] == "router-access")["data"]
    key_files = [e["key_file"] for e in yaml.safe_load(access["auth.yaml"])["api_keys"]]
    assert key_files == [f"/etc/maas/keys/{name}" for name in literals] and literals


def test_every_router_replica_shares_one_redis():
    by_kind = {(d["kind"], d["metadata"]["name"]): d for _, d in MANIFESTS}
    assert ("Deployment", "redis") in by_kind and ("Service", "redis") in by_kind
    router = by_kind[("Deployment", "router")]
    assert router["spec"]["replicas"] > 1
    env = {e["name"]: e.get("value") for c in containers(router) for e in c["env"]}
    port = by_kind[("Service", "redis")]["spec"]["ports"][0]["port"]
    assert env["ROUTER_REDIS_URL"] == f"redis://redis:{port}/0"
    # it holds the quota counts: an append-only file fsynced every second, on a claimed volume
    redis = by_kind[("Deployment", "redis")]
    args = containers(redis)[0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "everysec"
    pod = redis["spec"]["template"]["spec"]
    data = next(m["name"] for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/data")
    claim = next(v for v in pod["volumes"] if v["name"] == data)["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in by_kind
    assert redis["spec"]["strategy"]["type"] == "Recreate"  # a ReadWriteOnce volume: never two pods on it
    # the chart: a URL, or a Secret holding one (a password in it), becomes ROUTER_REDIS_URL
    template = _templates(HELM / "router")["deployment.yaml"]
    assert "ROUTER_REDIS_URL" in template and ".Values.redis.existingSecret" in template
    assert ".Values.redis.url" in template
    values = _values(HELM / "router")
    assert set(values["redis"]) == {"url", "existingSecret", "secretKey"}


def test_env_names_in_templates_are_found():
    names = template_env_names(_templates(HELM / "router")["deployment.yaml"])
    assert {"ROUTER_ROUTING_PATH", "QWEN3_API_KEY"} <= names
