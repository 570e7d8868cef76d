"""No example key can go live: the deployment guide's example keys appear in no deployment artefact
(only in examples/, which no documented command uses), and the production configs refuse to start
without the keys they read from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.deploy import DEPLOY
from tests.support.processes import ROOT, base_env

# The guide's example keys (deployment-guide.ru.md, auth.yaml and rate_limits.yaml).
GUIDE_EXAMPLE_KEYS = ("production-key-1", "production-key-2", "admin-key")
ARTEFACTS = [DEPLOY, ROOT / "services", ROOT / "scripts"]


def _files():
    for folder in ARTEFACTS:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def test_no_deployment_artefact_holds_an_example_key():
    files = list(_files())
    assert any(p.name == "values.yaml" for p in files) and any(p.name == "Dockerfile" for p in files)
    found = [(str(p.relative_to(ROOT)), key) for p in files for key in GUIDE_EXAMPLE_KEYS
             if key in p.read_text(errors="replace")]
    assert not found


def test_the_examples_keep_the_guides_keys_where_nothing_applies_them():
    text = (ROOT / "examples" / "configs" / "auth.yaml").read_text()
    assert all(key in text for key in GUIDE_EXAMPLE_KEYS)
    for path in _files():  # comments and docs may point at them; nothing mounts, copies or applies them
        if path.suffix == ".md":
            continue
        code = [line for line in path.read_text(errors="replace").splitlines() if not line.strip().startswith("#")]
        assert not [line for line in code if "examples/" in line], path


@pytest.mark.parametrize("unset", ["MAAS_API_KEY_PRODUCTION_1", "MAAS_API_KEY_ADMIN"])
def test_the_production_configs_refuse_to_load_without_their_keys(unset):
    env = base_env(ROUTER_ROUTING_PATH=str(DEPLOY / "configs" / "routing.yaml"),
                   ROUTER_AUTH_PATH=str(DEPLOY / "configs" / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(DEPLOY / "configs" / "rate_limits.yaml"),
                   MAAS_API_KEY_PRODUCTION_1="sk-test-1", MAAS_API_KEY_PRODUCTION_2="sk-test-2",
                   MAAS_API_KEY_ADMIN="sk-test-admin")
    env.pop(unset)
    result = subprocess.run([sys.executable, "-m", "core.cli", "check-config"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert unset in result.stderr and "not set" in result.stderr
