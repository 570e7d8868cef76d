"""Environment variables, production configs and docs agree with the code.

Variable names come from scanning the code (tests.support.deploy.code_env_vars), so a new
variable in the code must be documented, and a deployment cannot set one the code ignores.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from core.config import Settings
from core.gateway import Gateway
from core.plugins import build_plugin_manager
from tests.support.deploy import (
    CODE_DIRS,
    COMPOSE,
    DEPLOY,
    DOCKERFILES,
    HELM,
    ROOT,
    code_env_vars,
    compose_env,
    containers,
    dockerfile_instructions,
    load_compose,
    manifest_docs,
    template_env_names,
)
from tests.support.processes import base_env

OPERATIONS = ROOT / "OPERATIONS.md"
CONFIGS = DEPLOY / "configs"
EXAMPLES = ROOT / "examples" / "configs"
# What deploy/configs/auth.yaml reads its keys from (the production compose file requires them).
PRODUCTION_KEY_ENV = {"MAAS_API_KEY_PRODUCTION_1": "sk-test-prod-1", "MAAS_API_KEY_PRODUCTION_2": "sk-test-prod-2",
                      "MAAS_API_KEY_ADMIN": "sk-test-admin"}
GUIDE = ROOT.parent / "shared" / "seed" / "deployment-guide.ru.md"
# Read by libraries the images use, not by our code; OPERATIONS.md documents them too.
LIBRARY_VARS = {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
                "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR",
                "PIP_DISABLE_PIP_VERSION_CHECK", "MALLOC_ARENA_MAX"}
OUR_SERVICES = ("router", "rerank")


@pytest.fixture(scope="module")
def code_vars() -> set[str]:
    found = set(code_env_vars())
    # The scan must see the settings classes, or every check below would pass vacuously.
    assert {"ROUTER_ROUTING_PATH", "ROUTER_FEATURE_FLAGS", "QWEN3_API_KEY", "RERANK_MODEL_NAME",
            "RERANK_QUEUE_TIMEOUT_MS"} <= found
    return found


def _deployed_env() -> dict[str, set[str]]:
    """Env var → where a compose file, chart, manifest or Dockerfile sets it for router/rerank."""
    out: dict[str, set[str]] = {}

    def add(names, where):
        for name in names:
            out.setdefault(name, set()).add(where)

    for path in sorted(COMPOSE.glob("*.yml")):
        for name, svc in load_compose(path)["services"].items():
            image = str(svc.get("image", "")) + str(svc.get("build", ""))
            if any(s in image for s in OUR_SERVICES):
                add(compose_env(svc), f"{path.name}:{name}")
    for chart in OUR_SERVICES:
        add(template_env_names((HELM / chart / "templates" / "deployment.yaml").read_text()), f"helm/{chart}")
        add(yaml.safe_load((HELM / chart / "values.yaml").read_text())["env"], f"helm/{chart}/values")
    for path, doc in manifest_docs():
        for container in containers(doc):
            if doc["metadata"]["name"] in OUR_SERVICES:
                add((e["name"] for e in container.get("env", [])), f"manifests/{path.name}")
    for service, dockerfile in DOCKERFILES.items():
        for op, args in dockerfile_instructions(dockerfile):
            if op == "ENV":
                add(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]+)=", args), f"{service}/Dockerfile")
    return out


def test_deployments_set_only_variables_the_code_reads(code_vars):
    deployed = _deployed_env()
    assert "ROUTER_REQUEST_TIMEOUT_SECONDS" in deployed and "RERANK_DEVICE" in deployed
    # the production auth.yaml reads its keys from variables it names (key_env)
    auth = yaml.safe_load((CONFIGS / "auth.yaml").read_text())
    key_vars = {e["key_env"] for e in auth["api_keys"] if isinstance(e, dict) and "key_env" in e}
    assert key_vars == set(PRODUCTION_KEY_ENV)
    unknown = {name: sorted(where) for name, where in deployed.items()
               if name not in code_vars and name not in LIBRARY_VARS and name not in key_vars}
    assert not unknown, f"set in deployments but read by no code: {unknown}"


def _documented() -> set[str]:
    text = OPERATIONS.read_text()
    return {m for line in text.splitlines() if line.startswith("|") for m in re.findall(r"`([A-Z][A-Z0-9_]+)`", line)}


def test_every_variable_is_documented_in_operations(code_vars):
    documented = _documented()
    assert not sorted(code_vars - documented), "read by the code, missing from OPERATIONS.md tables"
    used_library = {n for n in _deployed_env() if n in LIBRARY_VARS}
    assert not sorted(used_library - documented)


@pytest.mark.skipif(not GUIDE.is_file(), reason="the deployment guide (shared/seed) is not beside the repo")
def test_code_reads_every_variable_of_the_guide(code_vars):
    guide = GUIDE.read_text()
    section = guide.split("## Переменные окружения", 1)[1].split("### Infinity", 1)[0]
    names = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE))
    assert len(names) == 22
    assert not sorted(names - code_vars)


def test_production_configs_validate_field_by_field(monkeypatch):
    for name, value in PRODUCTION_KEY_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings(routing_path=str(CONFIGS / "routing.yaml"), auth_path=str(CONFIGS / "auth.yaml"),
                        rate_limits_path=str(CONFIGS / "rate_limits.yaml"))
    files = Gateway(settings).validate()  # every field checked, with the plugins that own them
    routes = files.routing.routes
    assert set(routes) == {"bge-m3", "multilingual-e5-large", "frida", "rerank-base"}
    assert {r.upstream.type for r in routes.values()} == {"infinity", "rerank"}
    assert routes["rerank-base"].max_top_k == 50 and routes["rerank-base"].upstream.timeout_s == 10
    assert routes["bge-m3"].upstream.timeout_s == 3.0
    assert len(files.auth.keys) == 3 and not files.auth.allow_anonymous_without_api_keys
    assert {k.name for k in files.auth.keys} == {"production-1", "production-2", "admin"}
    assert files.rate_limits.resolve("buckets", files.auth)[0]["admin"].capacity == 120


def _registered_adapter_types() -> set[str]:
    types: set[str] = set()
    build_plugin_manager().hook.register_adapters(register=lambda name, factory: types.add(name))
    return types


def test_production_configs_pass_check_config():
    missing = {"infinity", "rerank"} - _registered_adapter_types()
    if missing:
        pytest.skip(f"adapter type(s) {sorted(missing)} are not registered in this build")
    env = base_env(ROUTER_ROUTING_PATH=str(CONFIGS / "routing.yaml"), ROUTER_AUTH_PATH=str(CONFIGS / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(CONFIGS / "rate_limits.yaml"), **PRODUCTION_KEY_ENV)
    # Validation only: nothing listens on infinity-embed:7997 or rerank:9002 here.
    result = subprocess.run([sys.executable, "-m", "core.cli", "check-config"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == 3


@pytest.mark.skipif(not GUIDE.is_file(), reason="the deployment guide (shared/seed) is not beside the repo")
@pytest.mark.parametrize("name", ["routing.yaml", "auth.yaml", "rate_limits.yaml"])
def test_production_configs_are_the_guides(name):
    """routing.yaml is the guide's; its auth.yaml and rate_limits.yaml, which hold example keys, are
    kept as written in examples/configs/ (deploy/configs/ takes real keys from the environment)."""
    guide = GUIDE.read_text()
    block = guide.split(f"### {name}", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    ours = yaml.safe_load(((CONFIGS if name == "routing.yaml" else EXAMPLES) / name).read_text())
    if name == "routing.yaml":  # the guide's entries exactly, plus the fields the product adds on purpose
        assert set(ours.pop("defaults")) == {"embeddings", "rerank"}
        for entry in [*ours["embeddings"], *ours["rerank"]]:
            assert entry.pop("max_input_tokens") > 0
            entry.pop("prompts", None)
    assert ours == yaml.safe_load(block)


DOCS = ["README.md", "DEVELOPER.md", "OPERATIONS.md", "docs/architecture.md", "deploy/k8s/manifests/README.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_docs_exist_and_their_relative_links_resolve(doc):
    path = ROOT / doc
    text = path.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{doc} links to missing {target}"


def test_every_metric_is_documented_in_operations():
    text = OPERATIONS.read_text()
    metrics = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            metrics |= set(re.findall(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_]+)\"", path.read_text()))
    assert {"maas_requests_total", "rerank_batch_size"} <= metrics
    assert not sorted(m for m in metrics if f"`{m}`" not in text)


def test_architecture_has_a_diagram():
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert re.search(r"```\n[^`]*(──|-->|->)[^`]*```", text)
