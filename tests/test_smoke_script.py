"""scripts/smoke_test.sh against a router with API keys: every embedding model it is told of, and a
request without a key refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.processes import ROOT, start_router

KEY = "sk-smoke-test-3b7e"  # noqa: S105 - a test key


@pytest.fixture(scope="module")
def keyed_router(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    configs = work / "configs"
    configs.mkdir()
    write_yaml(configs / "routing.yaml", {"embeddings": [
        {"model": "narrow", "upstream": {"type": "echo", "dim": 4}},
        {"model": "wide", "upstream": {"type": "echo", "dim": 8}}],
        "rerank": [{"model": "rerank-base", "upstream": {"type": "echo"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [{"name": "smoke", "key": KEY}]})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 1000, "refill_rate": 1000}})
    site = echo.install_plugin(work / "site")
    server, url = start_router(configs, work / "router.log", PYTHONPATH=f"{site}:{ROOT}")
    yield url
    server.stop()


def _smoke(url: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_SMOKE")}
    full.update(PYTHON=sys.executable, MAAS_API_KEY=KEY, **env)
    return subprocess.run(["bash", str(ROOT / "scripts" / "smoke_test.sh"), url], env=full, capture_output=True,
                          text=True, timeout=120)


def test_every_model_is_checked_and_a_keyless_request_is_refused(keyed_router):
    result = _smoke(keyed_router, MAAS_SMOKE_EMBED_MODELS="narrow:4 wide:8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   v1/embeddings narrow has 4 dimensions" in result.stdout
    assert "ok   v1/embeddings wide has 8 dimensions" in result.stdout
    assert "ok   a request without a key is refused" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_a_model_with_the_wrong_width_or_missing_fails_the_smoke_test(keyed_router):
    result = _smoke(keyed_router, MAAS_SMOKE_EMBED_MODELS="narrow:4 wide:16")
    assert result.returncode == 1 and "FAIL v1/embeddings wide has 16 dimensions" in result.stdout
    missing = _smoke(keyed_router, MAAS_SMOKE_EMBED_MODELS="narrow:4 absent:4")
    assert missing.returncode == 1 and "FAIL v1/models lists absent" in missing.stdout


def test_by_default_it_checks_every_model_the_gateway_lists(keyed_router):
    result = _smoke(keyed_router)  # the echo models declare no width: a vector is what is checked
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   v1/embeddings narrow answers a vector" in result.stdout
    assert "ok   v1/embeddings wide answers a vector" in result.stdout
    assert "ok   v1/rerank rerank-base top_k=1" in result.stdout
    required = _smoke(keyed_router, MAAS_SMOKE_REQUIRE="narrow bge-m3")
    assert required.returncode == 1 and "FAIL v1/models lists bge-m3 (required)" in required.stdout
    assert "ok   v1/models lists narrow (required)" in required.stdout


def test_with_no_arguments_it_passes_against_the_quick_start(router_url):
    """The README's quick start (the embedded default, anonymous) and the smoke test as it ships."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_test.sh"), router_url],
                            env={**full, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   v1/embeddings minilm has 384 dimensions" in result.stdout
