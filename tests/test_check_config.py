"""`maas check-config` runs the same validation as a reload and names file and line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.config_cases import BAD_CASES, write_good, write_text
from tests.support.processes import ROOT, base_env


def _check_config(config_dir) -> subprocess.CompletedProcess:
    env = base_env(ROUTER_ROUTING_PATH=str(config_dir / "routing.yaml"),
                   ROUTER_AUTH_PATH=str(config_dir / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(config_dir / "rate_limits.yaml"))
    return subprocess.run([sys.executable, "-m", "core.cli", "check-config"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_good_files_pass(tmp_path):
    write_good(tmp_path, "minilm", "minilm-2")
    result = _check_config(tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("routing.yaml", "auth.yaml", "rate_limits.yaml"):
        assert f"ok: {tmp_path / name}" in result.stdout


@pytest.mark.parametrize("case", BAD_CASES, ids=[c.name for c in BAD_CASES])
def test_bad_file_fails_naming_file_and_line(tmp_path, case):
    write_good(tmp_path)
    write_text(tmp_path / case.file, case.text)
    result = _check_config(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / case.file}:{case.line}: " in result.stderr, result.stderr
    assert case.words in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_reported(tmp_path):
    write_good(tmp_path)
    (tmp_path / "auth.yaml").unlink()
    result = _check_config(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'auth.yaml'}: cannot read file" in result.stderr
