"""The Helm charts rendered by Helm itself (the helm-python-sdk library, offline), as
``helm upgrade --install`` renders them, and held with the plain manifests to one standard.

Every rendered object, for the default values and for the values the docs install with, must
match the Kubernetes schema (kubernetes-validate, strict) and pass ``helm lint --strict``. Every
pod, of every chart and manifest, runs hardened (non-root, RuntimeDefault seccomp, no token, no
privilege escalation, no capabilities, read-only root with a bounded /tmp). Images are pinned;
Infinity gets a GPU and updates with Recreate; the router ships no example key; each chart's
values.schema.json refuses what an unescaped ``--set ...nvidia.com/gpu=1`` makes.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from core.config import Settings
from core.gateway import Gateway
from tests.support.deploy import DEPLOY, HELM, MANIFESTS, helm_charts, manifest_docs

K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
NAMESPACE = "maas"
# The deployment guide's example keys: none may reach a cluster.
GUIDE_EXAMPLE_KEYS = ("production-key-1", "production-key-2", "admin-key")
CHART_NAMES = [c.name for c in helm_charts()]
# A file someone may add beside the stack (an Ingress for Traefik); not part of these checks.
OPTIONAL_MANIFESTS = {"ingress-traefik.yaml"}
STACK_MANIFESTS = {"infinity-embed.yaml", "rerank.yaml", "router.yaml", "redis.yaml"}

# --set flags as the docs write them (OPERATIONS.md, the deployment guide, the chart comments),
# parsed by Helm's own --set parser.
DOCUMENTED_SETS: dict[str, list[str]] = {
    "router": [
        "replicaCount=3",
        "redis.url=redis://redis:6379/0",
        "replicaCount=3,redis.url=redis://redis:6379/0",
        "redis.existingSecret=maas-router-redis",
        "access.existingSecret=maas-router-access",
        "qwen3.enabled=true,qwen3.existingSecret=maas-qwen3",
        "autoscaling.enabled=true",
        "replicaCount=1",
        "image.digest=sha256:" + "0" * 64,
    ],
    "rerank": ["replicaCount=1", "runtimeClassName=nvidia,env.RERANK_DEVICE=gpu,resources.limits.nvidia\\.com/gpu=1"],
    "infinity-embed": [
        "persistence.enabled=false",
        "runtimeClassName=nvidia",
        "resources.limits.nvidia\\.com/gpu=1",
        "image.tag=0.0.77-cpu,resources.limits.nvidia\\.com/gpu=null",
    ],
}
CASES = [(chart, "") for chart in CHART_NAMES] + [(chart, s) for chart, sets in DOCUMENTED_SETS.items() for s in sets]


def _values(sets: str) -> dict[str, Any]:
    return helm.parse_set_string(sets) if sets else {}


@functools.cache
def _chart(name: str) -> helm.Chart:
    return helm.Chart.load(HELM / name)


@functools.cache
def _rendered_text(name: str, sets: str = "") -> dict[str, str]:
    """Template path (under templates/) → rendered text, as `helm install <name> -n maas` renders."""
    out = _chart(name).render(_values(sets), name=name, namespace=NAMESPACE, is_install=True)
    return {path.split("/templates/", 1)[1]: text for path, text in out.items()}


def render(name: str, sets: str = "") -> list[dict[str, Any]]:
    """Every object the release would create (helm test hooks included), NOTES.txt left out."""
    return [doc for path, text in _rendered_text(name, sets).items() if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def render_values(name: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Like render, for values that --set cannot write (lists of objects, string "true")."""
    out = _chart(name).render(values, name=name, namespace=NAMESPACE, is_install=True)
    return [doc for path, text in out.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return specs


def stack_manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in manifest_docs() if p.name not in OPTIONAL_MANIFESTS]


def _case_id(case: tuple[str, str]) -> str:
    return f"{case[0]}[{case[1] or 'defaults'}]"


# -- rendering, schema, lint ----------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_rendered_object_matches_the_kubernetes_schema(case, version):
    docs = render(*case)
    assert {"Deployment", "Service"} <= {d["kind"] for d in docs}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_render_check_can_fail():
    deployment = copy.deepcopy(by_kind(render("router"), "Deployment")["router"])
    deployment["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_helm_lint_strict_reports_no_error_or_warning(case):
    report = helm.lint(HELM / case[0], _values(case[1]), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert not report["errors"]
    # severity: 1 info (e.g. "icon is recommended"), 2 warning, 3 error
    assert not [m for m in report["messages"] if m["severity"] >= 2]


def test_lint_can_fail():
    report = helm.lint(HELM / "router", {"replicaCount": "three"}, strict=True)
    assert report["errors"]


# -- values.schema.json ---------------------------------------------------------------------------

# What `--set resources.limits.nvidia.com/gpu=1` (the guide's form, dot unescaped) makes.
UNESCAPED_GPU = "resources.limits.nvidia.com/gpu=1"
ESCAPED_GPU = "resources.limits.nvidia\\.com/gpu=1"


@pytest.mark.parametrize("name", CHART_NAMES)
def test_values_schema_accepts_defaults_and_documented_values(name):
    chart = _chart(name)
    schema = chart.schema
    assert schema and schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False  # a misspelt value is refused, not ignored
    for sets in ["", ESCAPED_GPU, *DOCUMENTED_SETS[name]]:
        chart.validate_schema(chart.merge_values(_values(sets)))


@pytest.mark.parametrize("name", CHART_NAMES)
def test_values_schema_refuses_the_unescaped_gpu_key_and_wrong_types(name):
    chart = _chart(name)
    assert helm.parse_set_string(UNESCAPED_GPU) == {"resources": {"limits": {"nvidia": {"com/gpu": 1}}}}
    assert helm.parse_set_string(ESCAPED_GPU) == {"resources": {"limits": {"nvidia.com/gpu": 1}}}
    for bad in (UNESCAPED_GPU, "resources.requests.nvidia.com/gpu=1", "replicaCount=three",
                "replicacount=3", "image.digest=latest"):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(chart.merge_values(helm.parse_set_string(bad)))
    with pytest.raises(helm.HelmValuesError):  # install and upgrade check it too
        chart.render(helm.parse_set_string(UNESCAPED_GPU), name=name, namespace=NAMESPACE, is_install=True)


# -- pod security ---------------------------------------------------------------------------------

def check_pod_hardened(where: str, spec: dict[str, Any], scratch: bool = True) -> None:
    """Fail unless the pod runs hardened. ``scratch``: its processes get a writable /tmp, a
    bounded emptyDir, since the root filesystem is read-only."""
    pod = spec.get("securityContext", {})
    assert pod.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
    assert pod.get("runAsUser", 1) != 0, f"{where}: runAsUser 0"
    assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{where}: seccompProfile"
    assert spec.get("automountServiceAccountToken") is False, f"{where}: service-account token mounted"
    empty_dirs = {v["name"]: v["emptyDir"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for name, empty_dir in empty_dirs.items():
        assert empty_dir.get("sizeLimit"), f"{where}: emptyDir {name} without sizeLimit"
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        label = f"{where}/{container['name']}"
        ctx = container.get("securityContext", {})
        assert ctx.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities.drop"
        assert ctx.get("privileged") is not True, f"{label}: privileged"
        assert ctx.get("runAsUser", 1) != 0, f"{label}: runAsUser 0"
        assert ctx.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        if scratch or "/tmp" in mounts:
            assert mounts.get("/tmp") in empty_dirs, f"{label}: /tmp is not an emptyDir"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_rendered_pod_is_hardened(case):
    specs = pod_specs(render(*case))
    assert len(specs) == 2  # the workload and its `helm test` pod
    for where, spec in specs:
        check_pod_hardened(where, spec, scratch=not where.startswith("Pod/"))  # the test pod only prints


@pytest.mark.parametrize(("path", "doc"), [(p, d) for p, d in stack_manifests() if pod_specs([d])],
                         ids=lambda v: getattr(v, "name", None) or v["metadata"]["name"])
def test_every_manifest_pod_is_hardened(path, doc):
    for where, spec in pod_specs([doc]):
        # Redis writes only to /data (its append-only file, on a claimed volume).
        check_pod_hardened(f"{path.name}:{where}", spec, scratch=doc["metadata"]["name"] != "redis")


@pytest.mark.parametrize("breach", [
    lambda s: s["securityContext"].pop("seccompProfile"),
    lambda s: s["securityContext"].update(runAsNonRoot=False),
    lambda s: s.pop("automountServiceAccountToken"),
    lambda s: s["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
    lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    lambda s: s["volumes"][-1]["emptyDir"].pop("sizeLimit"),
])
def test_the_security_check_can_fail(breach):
    spec = copy.deepcopy(by_kind(render("rerank"), "Deployment")["rerank"]["spec"]["template"]["spec"])
    check_pod_hardened("rerank", spec)
    breach(spec)
    with pytest.raises(AssertionError):
        check_pod_hardened("rerank", spec)


# -- images ---------------------------------------------------------------------------------------

def _images(docs) -> list[str]:
    return [c["image"] for _, spec in pod_specs(docs) for c in [*spec.get("initContainers", []), *spec["containers"]]]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rendered_images_are_pinned(case):
    for image in _images(render(*case)):
        assert not image.endswith(":latest"), image
        assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image.rsplit("/", 1)[-1]), f"{image}: no tag"


@pytest.mark.parametrize("name", CHART_NAMES)
def test_image_tag_defaults_to_app_version_and_a_digest_wins(name):
    chart = _chart(name)
    app_version = chart.metadata["appVersion"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", app_version), app_version
    values = chart.values
    assert values["image"]["tag"] == "" and values["image"]["pullPolicy"] == "IfNotPresent"
    workload = next(d for d in render(name) if d["kind"] == "Deployment")
    image = workload["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{values['image']['repository']}:{app_version}"
    digest = "sha256:" + "ab" * 32
    pinned = next(d for d in render(name, f"image.digest={digest}") if d["kind"] == "Deployment")
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"] == f"{values['image']['repository']}@{digest}"
    tagged = next(d for d in render(name, "image.tag=9.9.9") if d["kind"] == "Deployment")
    assert tagged["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":9.9.9")


def test_manifest_images_are_the_charts_app_versions():
    images = {d["metadata"]["name"]: c["image"] for _, d in stack_manifests() for _, spec in pod_specs([d])
              for c in spec["containers"]}
    for name in CHART_NAMES:
        chart = _chart(name)
        assert images[name] == f"{chart.values['image']['repository']}:{chart.metadata['appVersion']}"
    assert not [i for i in images.values() if i.endswith(":latest") or ":" not in i.rsplit("/", 1)[-1]]


# -- Infinity: GPU, Recreate, cache ---------------------------------------------------------------

def _deployment(name: str, sets: str = "") -> dict[str, Any]:
    return by_kind(render(name, sets), "Deployment")[name]


def test_infinity_asks_for_a_gpu_and_recreates():
    deployment = _deployment("infinity-embed")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    # A rolling update would wait for a second GPU that a one-GPU node never has.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "runtimeClassName" not in spec
    gpu_runtime = _deployment("infinity-embed", "runtimeClassName=nvidia")["spec"]["template"]["spec"]
    assert gpu_runtime["runtimeClassName"] == "nvidia"
    gpu_nodes = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100"]}]}]}}},
    }
    docs = render_values("infinity-embed", gpu_nodes)
    hooked = by_kind(docs, "Deployment")["infinity-embed"]["spec"]["template"]["spec"]
    assert {k: hooked[k] for k in gpu_nodes} == gpu_nodes
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_infinity_cache_is_a_claim_or_a_bounded_emptydir():
    values = _chart("infinity-embed").values
    assert values["persistence"]["enabled"] is True
    docs = render("infinity-embed")
    claim = by_kind(docs, "PersistentVolumeClaim")["infinity-embed-cache"]
    assert claim["spec"]["resources"]["requests"]["storage"] == values["persistence"]["size"]
    spec = _deployment("infinity-embed")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "infinity-embed-cache"
    off = render("infinity-embed", "persistence.enabled=false")
    assert not by_kind(off, "PersistentVolumeClaim")
    spec = by_kind(off, "Deployment")["infinity-embed"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["cache"]["emptyDir"] == {"sizeLimit": values["persistence"]["size"]}


def test_infinity_runs_non_root_with_home_and_hf_home_on_the_cache():
    spec = _deployment("infinity-embed")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    cache = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "cache")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == cache and env["HF_HOME"].startswith(cache + "/")
    assert spec["securityContext"]["runAsUser"] != 0 and spec["securityContext"]["fsGroup"]


def test_infinity_manifest_mirrors_the_chart():
    docs = [d for p, d in stack_manifests() if p.name == "infinity-embed.yaml"]
    deployment = by_kind(docs, "Deployment")["infinity-embed"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = by_kind(docs, "PersistentVolumeClaim")["infinity-embed-cache"]
    assert claim["spec"]["resources"]["requests"]["storage"] == _chart("infinity-embed").values["persistence"]["size"]


# -- mirror: manifests = the charts' default render -----------------------------------------------

POD_FIELDS = ("securityContext", "automountServiceAccountToken", "volumes", "topologySpreadConstraints",
              "runtimeClassName", "terminationGracePeriodSeconds")
CONTAINER_FIELDS = ("image", "args", "resources", "securityContext", "volumeMounts", "ports")


# The router manifest's replicas share redis.yaml's Redis: its chart counterpart sets redis.url.
MIRRORED_SETS = {"router": "redis.url=redis://redis:6379/0"}


@pytest.mark.parametrize("name", CHART_NAMES)
def test_manifests_mirror_the_charts_default_render(name):
    manifests = [d for _, d in stack_manifests()]
    ours, chart = by_kind(manifests, "Deployment")[name], _deployment(name, MIRRORED_SETS.get(name, ""))
    assert ours["spec"].get("replicas") == chart["spec"].get("replicas")
    assert ours["spec"].get("strategy") == chart["spec"].get("strategy")
    ours_pod, chart_pod = ours["spec"]["template"]["spec"], chart["spec"]["template"]["spec"]
    for field in POD_FIELDS:
        assert ours_pod.get(field) == chart_pod.get(field), f"{name}: pod {field}"
    for field in CONTAINER_FIELDS:
        assert ours_pod["containers"][0].get(field) == chart_pod["containers"][0].get(field), f"{name}: {field}"
    env = [{e["name"]: e for e in pod["containers"][0]["env"]} for pod in (ours_pod, chart_pod)]
    assert env[0] == env[1], f"{name}: env"
    chart_pdb = by_kind(render(name), "PodDisruptionBudget").get(name)
    ours_pdb = by_kind(manifests, "PodDisruptionBudget").get(name)
    assert (ours_pdb or {}).get("spec") == (chart_pdb or {}).get("spec")


def test_the_manifest_folder_holds_the_stack():
    names = {p.name for p in MANIFESTS.glob("*.yaml")}
    # router-access.yaml (a Secret with the guide's example keys) is gone: `kubectl apply -f` of
    # this folder must apply no key. An Ingress file beside the stack is fine.
    assert names - OPTIONAL_MANIFESTS == STACK_MANIFESTS
    assert not [d for _, d in stack_manifests() if d["kind"] == "Secret"]


# -- router: keys, upstreams, proxies, extension points --------------------------------------------

def _rendered_text_all(name: str, sets: str = "") -> str:
    return "\n".join(_rendered_text(name, sets).values())


def _generated_key(docs) -> str:
    secret = by_kind(docs, "Secret")["router-keys"]
    assert set(secret["data"]) == {"default"}
    return base64.b64decode(secret["data"]["default"]).decode()


def test_router_ships_no_example_key_and_generates_one():
    values_text = (HELM / "router" / "values.yaml").read_text()
    first, second = render("router"), render("router", "replicaCount=3")
    for key in GUIDE_EXAMPLE_KEYS:
        assert key not in values_text and key not in _rendered_text_all("router")
    key = _generated_key(first)
    assert len(key) >= 32 and key.startswith("sk-") and key.isascii()
    # Offline every render is a fresh install; on a cluster the template reads the current
    # Secret back (lookup), so upgrades keep the key.
    assert _generated_key(second) != key and len(_generated_key(second)) >= 32
    template = (HELM / "router" / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace' in template and "randAlphaNum" in template


def test_router_reads_the_generated_key(tmp_path):
    docs = render("router")
    access = by_kind(docs, "ConfigMap")["router-access"]["data"]
    auth = yaml.safe_load(access["auth.yaml"])
    assert auth == {"api_keys": [{"name": "default", "key_file": "/etc/maas/keys/default"}],
                    "allow_anonymous_without_api_keys": False}
    spec = by_kind(docs, "Deployment")["router"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/etc/maas/keys"]]["secret"]["secretName"] == "router-keys"
    sources = volumes[mounts["/app/configs"]]["projected"]["sources"]
    assert {"configMap": {"name": "router-access"}} in sources and {"configMap": {"name": "router-routing"}} in sources
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["ROUTER_AUTH_PATH"] == "/app/configs/auth.yaml"
    assert env["ROUTER_RATE_LIMITS_PATH"] == "/app/configs/rate_limits.yaml"
    # The router's own loader accepts the files, with the key where the Secret mount puts it.
    key = _generated_key(docs)
    files = _load_router_config(tmp_path, by_kind(docs, "ConfigMap"), {"default": key})
    assert [k.name for k in files.auth.keys] == ["default"] and files.auth.find(key) is not None
    assert not files.auth.anonymous_allowed


def _load_router_config(tmp_path: Path, configmaps: dict[str, dict], keys: dict[str, str]):
    (tmp_path / "keys").mkdir()
    for name, value in keys.items():
        (tmp_path / "keys" / name).write_text(value + "\n")  # Secret files may end with a newline
    data = {**configmaps["router-routing"]["data"], **configmaps["router-access"]["data"]}
    data["auth.yaml"] = data["auth.yaml"].replace("/etc/maas/keys/", f"{tmp_path}/keys/")
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    settings = Settings(routing_path=str(tmp_path / "routing.yaml"), auth_path=str(tmp_path / "auth.yaml"),
                        rate_limits_path=str(tmp_path / "rate_limits.yaml"))
    return Gateway(settings).validate()  # every file, with the plugins that own rate_limits.yaml's parts


def test_router_with_an_existing_secret_mounts_it_and_generates_nothing():
    docs = render("router", "access.existingSecret=maas-router-access")
    assert not by_kind(docs, "Secret") and "router-access" not in by_kind(docs, "ConfigMap")
    spec = by_kind(docs, "Deployment")["router"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert {"secret": {"name": "maas-router-access"}} in volumes["configs"]["projected"]["sources"]
    assert "keys" not in volumes
    assert "/etc/maas/keys" not in {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}


def test_router_notes_say_how_to_reach_it_read_the_key_and_share_redis():
    notes = _rendered_text("router")["NOTES.txt"]
    assert "kubectl -n maas port-forward svc/router 8000:8000" in notes
    assert "kubectl -n maas get secret router-keys -o jsonpath='{.data.default}' | base64 -d" in notes
    assert "redis.url" in notes and "WARNING" in notes  # three replicas, no Redis: limits multiply
    assert "WARNING" not in _rendered_text("router", "redis.url=redis://redis:6379/0")["NOTES.txt"]
    assert "router-keys" not in _rendered_text("router", "access.existingSecret=mine")["NOTES.txt"]
    for name in CHART_NAMES:
        assert _rendered_text(name)["NOTES.txt"].strip(), name


def test_router_upstreams_come_from_values():
    routing_value = _chart("router").values["routing"]
    assert "http://" not in routing_value, "routing.yaml must not hard-code release names"

    def urls(sets=""):
        routing = yaml.safe_load(by_kind(render("router", sets), "ConfigMap")["router-routing"]["data"]["routing.yaml"])
        return {e["model"]: e["upstream"]["url"] for e in [*routing["embeddings"], *routing["rerank"]]}

    production = yaml.safe_load((DEPLOY / "configs" / "routing.yaml").read_text())
    rendered = yaml.safe_load(by_kind(render("router"), "ConfigMap")["router-routing"]["data"]["routing.yaml"])
    assert rendered == production
    moved = urls("upstreams.infinity=http://embed.ml.svc:7997,upstreams.rerank=http://rr.ml.svc:9002")
    assert moved == {"bge-m3": "http://embed.ml.svc:7997", "multilingual-e5-large": "http://embed.ml.svc:7997",
                     "frida": "http://embed.ml.svc:7997", "rerank-base": "http://rr.ml.svc:9002"}


def test_router_trusts_no_proxy_by_default():
    env = {e["name"]: e.get("value") for e in _deployment("router")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROUTER_TRUSTED_PROXIES"] == ""
    assert "CIDR" in (HELM / "router" / "values.yaml").read_text()


def test_router_extension_points():
    values = {
        "extraEnv": [{"name": "ROUTER_CACHE_REDIS_URL",
                      "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "url"}}}],
        "envFrom": [{"configMapRef": {"name": "router-extra"}}],
        "extraVolumes": [{"name": "team-keys", "secret": {"secretName": "team-keys"}}],
        "extraVolumeMounts": [{"name": "team-keys", "mountPath": "/etc/maas/team", "readOnly": True}],
    }
    docs = render_values("router", values)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    spec = by_kind(docs, "Deployment")["router"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert values["extraEnv"][0] in container["env"]
    assert container["envFrom"] == values["envFrom"]
    assert values["extraVolumes"][0] in spec["volumes"]
    assert values["extraVolumeMounts"][0] in container["volumeMounts"]
    check_pod_hardened("router", spec)


# -- availability ---------------------------------------------------------------------------------

def _selects(selector: dict[str, Any], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("name", ["router", "rerank"])
def test_replicated_charts_have_a_pdb_and_spread_across_nodes(name):
    docs = render(name)
    deployment = by_kind(docs, "Deployment")[name]
    assert deployment["spec"]["replicas"] > 1
    pdb = by_kind(docs, "PodDisruptionBudget")[name]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert _selects(pdb["spec"]["selector"], deployment)
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and _selects(spread["labelSelector"], deployment)
    # One replica: a PDB allowing one disruption protects nothing; none is made.
    assert not by_kind(render(name, "replicaCount=1"), "PodDisruptionBudget")


def test_router_autoscaling_is_optional_and_owns_the_replica_count():
    assert _chart("router").values["autoscaling"]["enabled"] is False
    assert not by_kind(render("router"), "HorizontalPodAutoscaler")
    docs = render("router", "autoscaling.enabled=true")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["router"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "router"}
    assert "replicas" not in by_kind(docs, "Deployment")["router"]["spec"]
    assert by_kind(docs, "PodDisruptionBudget")["router"]


# -- helm test hooks ------------------------------------------------------------------------------

HEALTH = {"router": "/health/ready", "rerank": "/health/ready", "infinity-embed": "/health"}


@pytest.mark.parametrize("name", CHART_NAMES)
def test_helm_test_pod_calls_the_service_health_route(name):
    docs = render(name)
    assert (HELM / name / "templates" / "tests" / "test-connection.yaml").is_file()
    (pod,) = by_kind(docs, "Pod").values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    service = by_kind(docs, "Service")[name]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}{HEALTH[name]}"
    assert pod["spec"]["containers"][0]["command"][-1] == url
    check_pod_hardened(f"{name} test pod", pod["spec"], scratch=False)


def test_schemas_are_json_files_helm_loads():
    for name in CHART_NAMES:
        on_disk = json.loads((HELM / name / "values.schema.json").read_text())
        assert on_disk == _chart(name).schema
