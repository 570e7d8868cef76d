"""Compose files and Dockerfiles, checked statically, and the compose files resolved by Docker
Compose itself (`docker compose config` needs no Docker engine, none runs here)."""

from __future__ import annotations

import difflib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
from tests.support.nginx import HTTP2_ON_SINCE, NGINX_CONF, RESOLVE_SINCE, for_nginx_version

QUICK = COMPOSE / "docker-compose.yml"
PRODUCTION = COMPOSE / "docker-compose.production.yml"
GUIDE_MODELS = ["BAAI/bge-m3", "intfloat/multilingual-e5-large", "ai-forever/FRIDA"]
# The keys deploy/configs/auth.yaml reads (key_env); the production compose file requires them.
PRODUCTION_KEYS = {"MAAS_API_KEY_PRODUCTION_1": "sk-test-prod-1", "MAAS_API_KEY_PRODUCTION_2": "sk-test-prod-2",
                   "MAAS_API_KEY_ADMIN": "sk-test-admin"}
# Files that are used only on top of another one, as their header says.
OVERRIDES = {"docker-compose.cpu.yml": QUICK}


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


def _flag(service: dict, name: str) -> str:
    """The value after ``name`` in a service's command."""
    command = service["command"]
    return command[command.index(name) + 1]


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
    # quota counts outlive a restart: an append-only file fsynced every second, on a named volume
    assert _flag(redis, "--appendonly") == "yes" and _flag(redis, "--appendfsync") == "everysec"
    volume, _, target = next(v for v in redis["volumes"] if v.endswith(":/data")).partition(":")
    assert target == "/data" and volume in load_compose(PRODUCTION)["volumes"]  # named, not the container's
    # the embedding cache: a Redis of its own, shared by every router, evicting least recently used
    cache = services["redis-cache"]
    assert {compose_env(r)["ROUTER_CACHE_REDIS_URL"] for r in routers.values()} == {"redis://redis-cache:6379/0"}
    policy = cache["command"][cache["command"].index("--maxmemory-policy") + 1]
    assert policy == "allkeys-lru" and "--maxmemory" in cache["command"]
    # ...and volatile: nothing saved, no volume
    assert _flag(cache, "--appendonly") == "no" and _flag(cache, "--save") == "" and not cache.get("volumes")
    # nginx.conf lists its upstreams by name: those names must be the router services.
    nginx_conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert set(re.findall(r"server (\w+):8000 [^;]*resolve;", nginx_conf)) == set(routers)
    for router in routers.values():  # fail fast when a key is unset (resolved for real below)
        env = compose_env(router)
        for name in PRODUCTION_KEYS:
            assert env[name] == f"${{{name}:?set {name} (see OPERATIONS.md)}}"
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
    torch_at = next(i for i, r in enumerate(runs) if re.search(r"pip install [^&]*\btorch==2\.13\.0\b", r))
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install [^&]*\s\.(\s|$)", r))
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


def _compose_binary() -> str | None:
    local = Path(sys.executable).parent / "docker-compose"
    return str(local) if local.is_file() else shutil.which("docker-compose")


COMPOSE_BIN = _compose_binary()
needs_compose = pytest.mark.skipif(COMPOSE_BIN is None,
                                   reason="docker-compose is not installed (scripts/bootstrap.sh test installs it)")


def _compose_config(tmp_path: Path, files: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only the variables given: nothing from the caller's shell, config or a .env beside the files.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
             "DOCKER_CONFIG": str(tmp_path / "docker"), "COMPOSE_DISABLE_ENV_FILE": "1"}
    argv = [COMPOSE_BIN, *(a for f in files for a in ("-f", str(f))), "config", "--format", "json"]
    return subprocess.run(argv, env={**clean, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _resolved(tmp_path: Path, files: list[Path], env: dict[str, str]) -> dict:
    result = _compose_config(tmp_path, files, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_compose
@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_docker_compose_resolves_the_file(path, tmp_path):
    files = [OVERRIDES[path.name], path] if path.name in OVERRIDES else [path]
    doc = _resolved(tmp_path, files, PRODUCTION_KEYS)
    assert set(doc["services"]) == set(load_compose(files[0])["services"])


@needs_compose
def test_the_cpu_override_really_drops_the_gpu(tmp_path):
    def devices(doc):
        return (doc["services"]["infinity-embed"].get("deploy", {}).get("resources", {})
                .get("reservations", {}).get("devices"))

    assert devices(_resolved(tmp_path, [QUICK], {}))[0]["capabilities"] == ["gpu"]
    assert not devices(_resolved(tmp_path, [QUICK, COMPOSE / "docker-compose.cpu.yml"], {}))


@needs_compose
@pytest.mark.parametrize("how", ["unset", "empty"])
@pytest.mark.parametrize("name", sorted(PRODUCTION_KEYS))
def test_production_compose_refuses_to_start_without_a_key(name, how, tmp_path):
    env = dict(PRODUCTION_KEYS)
    if how == "unset":
        del env[name]
    else:
        env[name] = ""
    result = _compose_config(tmp_path, [PRODUCTION], env)
    assert result.returncode != 0
    assert f"required variable {name} is missing a value: set {name} (see OPERATIONS.md)" in result.stderr
    assert not [other for other in PRODUCTION_KEYS if other != name and f"variable {other}" in result.stderr]


@needs_compose
def test_production_compose_gives_the_keys_to_the_routers_only(tmp_path):
    services = _resolved(tmp_path, [PRODUCTION], PRODUCTION_KEYS)["services"]
    routers = {n for n, s in services.items() if "maas-router" in s.get("image", "")}
    assert routers == {"router1", "router2", "router3"}
    for name, service in services.items():
        env = service.get("environment") or {}
        if name in routers:
            assert {k: env[k] for k in PRODUCTION_KEYS} == PRODUCTION_KEYS
        else:
            assert not set(env) & set(PRODUCTION_KEYS), name


def _nginx_directives(name: str) -> list[str]:
    code = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())
    return [m.strip() for m in re.findall(rf"^[ \t]*{name}[ \t]+([^;{{\n]*);", code, flags=re.MULTILINE)]


def test_nginx_follows_the_routers_through_dockers_dns():
    assert _nginx_directives("resolver") == ["127.0.0.11 valid=10s"]
    assert _nginx_directives("zone") == ["maas_router 64k"]  # `resolve` keeps its addresses there
    servers = _nginx_directives("server")
    assert servers and all(s.endswith(" resolve") for s in servers), servers
    assert _nginx_directives("listen") == ["80", "443 ssl"]
    assert _nginx_directives("http2") == ["on"]


def test_nginx_never_resends_a_503_to_another_replica():
    # The router answers 503 when a model is saturated: every replica would say the same.
    # (bulk-job uploads and jobs are not resent at all: "error" alone, without non_idempotent)
    assert _nginx_directives("proxy_next_upstream")[0] == "error non_idempotent"
    assert set(_nginx_directives("proxy_next_upstream")) == {"error non_idempotent", "error"}
    assert _nginx_directives("proxy_next_upstream_tries") == ["2"]


def test_the_production_nginx_image_reads_the_config_as_shipped():
    image = load_compose(PRODUCTION)["services"]["nginx"]["image"]
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?(-alpine)?", image)
    assert match, f"{image}: pin a version (latest/stable move)"
    # the oldest release the tag can point to
    oldest = (int(match[1]), int(match[2]), int(match[3] or 0))
    assert oldest >= max(RESOLVE_SINCE, HTTP2_ON_SINCE), image
    # its healthcheck runs curl, which the alpine image carries
    assert match[4] and load_compose(PRODUCTION)["services"]["nginx"]["healthcheck"]["test"][1] == "curl"


def _changes(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return ([d[2:].strip() for d in diff if d.startswith("- ")], [d[2:].strip() for d in diff if d.startswith("+ ")])


def test_the_test_harness_rewrites_only_what_an_older_nginx_cannot_parse():
    shipped = NGINX_CONF.read_text()
    servers = [f"server {s}" for s in _nginx_directives("server")]
    assert for_nginx_version(shipped, RESOLVE_SINCE) == shipped, "the production image's nginx reads it as it is"
    plain = [f"{s.removesuffix(' resolve')};" for s in servers]
    removed, added = _changes(shipped, for_nginx_version(shipped, HTTP2_ON_SINCE))  # no `resolve` yet
    assert sorted(removed) == sorted(["resolver 127.0.0.11 valid=10s;", *(f"{s};" for s in servers)])
    assert sorted(added) == sorted(plain)
    removed, added = _changes(shipped, for_nginx_version(shipped, (1, 22, 1)))  # Debian's nginx
    assert sorted(removed) == sorted(["resolver 127.0.0.11 valid=10s;", *(f"{s};" for s in servers),
                                      "listen 443 ssl;", "http2 on;"])
    assert sorted(added) == sorted([*plain, "listen 443 ssl http2;"])
