"""Compose files and Dockerfiles, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import importlib.resources
import json
import re

import jsonschema
import pytest

from tests.support.deploy import (
    COMPOSE,
    DOCKERFILES,
    ROOT,
    check_maas_argv,
    compose_env,
    compose_files,
    dockerfile_instructions,
    exec_form,
    load_compose,
)

QUICK = COMPOSE / "docker-compose.yml"
PRODUCTION = COMPOSE / "docker-compose.production.yml"
GUIDE_MODELS = ["BAAI/bge-m3", "intfloat/multilingual-e5-large", "ai-forever/FRIDA"]


@pytest.fixture(scope="module")
def compose_schema():
    # The Compose Specification's JSON schema, as vendored by check-jsonschema.
    text = (importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    return json.loads(text)


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path, compose_schema):
    doc = load_compose(path)
    validator = jsonschema.validators.validator_for(compose_schema)(compose_schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors


def test_compose_spec_check_can_fail(compose_schema):
    bad = {"services": {"router": {"image": "x", "ports": [{"published": "8085", "bogus": 1}]}}}
    assert list(jsonschema.validators.validator_for(compose_schema)(compose_schema).iter_errors(bad))


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_relative_mounts_and_build_contexts_exist(path):
    for name, svc in load_compose(path)["services"].items():
        build = svc.get("build")
        if build:
            context = (COMPOSE / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), (name, build)
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and "${" not in source:
                assert (COMPOSE / source).exists(), (name, volume)


def _infinity_models(service) -> list[str]:
    command = service["command"]
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--model-id"]


def test_quick_start_services_ports_healthchecks_and_gpu():
    doc = load_compose(QUICK)
    services = doc["services"]
    assert set(services) == {"router", "infinity-embed", "rerank"}
    assert "8085:8000" in services["router"]["ports"]
    for name, svc in services.items():
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    health = {n: " ".join(s["healthcheck"]["test"]) for n, s in services.items()}
    assert "/health/ready" in health["router"] and "9002/health/ready" in health["rerank"]
    assert "7997/health" in health["infinity-embed"]
    devices = services["infinity-embed"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert devices[0]["device_ids"] and "count" not in devices[0]  # device_ids and count exclude each other
    assert re.search(r"MIG-x{8}-x{4}-x{4}-x{4}-x{12}", QUICK.read_text()), "a MIG UUID example"
    assert _infinity_models(services["infinity-embed"]) == GUIDE_MODELS
    assert "infinity-cache" in doc["volumes"]  # the guide's `docker volume rm compose_infinity-cache`


def test_cpu_override_drops_the_gpu_reservation():
    override = load_compose(COMPOSE / "docker-compose.cpu.yml")
    assert override["services"]["infinity-embed"]["deploy"]["resources"]["reservations"]["devices"] == []
    assert "!reset" in (COMPOSE / "docker-compose.cpu.yml").read_text()


def test_production_stack():
    services = load_compose(PRODUCTION)["services"]
    routers = {n: s for n, s in services.items() if "maas-router" in s.get("image", "")}
    assert len(routers) == 3
    for router in routers.values():
        env = compose_env(router)
        assert env["ROUTER_ROUTING_PATH"] == "/app/configs/routing.yaml"
        assert env["ROUTER_AUTH_PATH"] == "/app/configs/auth.yaml"
        assert env["ROUTER_RATE_LIMITS_PATH"] == "/app/configs/rate_limits.yaml"
        assert env["ROUTER_REQUEST_TIMEOUT_SECONDS"] == "60"
        assert "http://localhost:8000/health/live" in router["healthcheck"]["test"]
        assert "../configs:/app/configs:ro" in router["volumes"]
    # one Redis for every router: otherwise each keeps its own buckets and limits triple
    redis = services["redis"]
    assert {compose_env(r)["ROUTER_REDIS_URL"] for r in routers.values()} == {"redis://redis:6379/0"}
    assert all(r["depends_on"]["redis"]["condition"] == "service_healthy" for r in routers.values())
    assert "redis-cli" in redis["healthcheck"]["test"] and "--appendonly" in redis["command"]
    assert "--maxmemory-policy" not in redis["command"]  # eviction must never touch rate-limit buckets
    # the embedding cache: a Redis of its own, shared by every router, evicting least recently used
    cache = services["redis-cache"]
    assert {compose_env(r)["ROUTER_CACHE_REDIS_URL"] for r in routers.values()} == {"redis://redis-cache:6379/0"}
    policy = cache["command"][cache["command"].index("--maxmemory-policy") + 1]
    assert policy == "allkeys-lru" and "--maxmemory" in cache["command"]
    # nginx.conf lists its upstreams by name: those names must be the router services.
    nginx_conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert set(re.findall(r"server (\w+):8000;", nginx_conf)) == set(routers)
    assert "../nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    infinity = services["infinity-embed"]
    assert _infinity_models(infinity) == GUIDE_MODELS
    assert infinity["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "http://localhost:7997/health" in infinity["healthcheck"]["test"]
    rerank = services["rerank"]
    assert rerank["deploy"]["replicas"] == 2
    assert compose_env(rerank)["RERANK_MAX_BATCH_SIZE"] == "16"
    assert json.loads(compose_env(rerank)["RERANK_MODEL_MAPPING"]) == {
        "rerank-base": "cross-encoder/ms-marco-MiniLM-L-2-v2"}
    assert "http://localhost:9002/health/ready" in rerank["healthcheck"]["test"]


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile(service):
    instructions = dockerfile_instructions(DOCKERFILES[service])
    runs = [args for op, args in instructions if op == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "pip install torch==2.13.0" in r)
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch_at < project_at, "torch (CPU build, pinned) must be installed before the project"
    assert ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in instructions
    assert any("apt-get install" in r and "curl" in r for r in runs), "curl for healthchecks"
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    cmds = [exec_form(args) for op, args in instructions if op == "CMD"]
    assert not [a for op, a in instructions if op == "ENTRYPOINT"]
    assert len(cmds) == 1
    check_maas_argv(cmds[0])
    want = {"router": ["serve", "--port", "8000"], "rerank": ["serve-rerank", "--port", "9002"]}[service]
    assert cmds[0][1] == want[0] and cmds[0][cmds[0].index("--port") + 1] == want[2]
    for op, args in instructions:
        if op == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


def test_cli_check_rejects_what_is_not_a_command():
    with pytest.raises(AssertionError):
        check_maas_argv(["maas", "serve-everything", "--port", "1"])
    with pytest.raises(AssertionError):
        check_maas_argv(["maas", "serve", "--no-such-option"])
