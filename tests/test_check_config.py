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


@pytest.mark.parametrize("file, text, line, words", [
    ("rate_limits.yaml", "default:\n  capacity: .inf\n  refill_rate: 1\n", 2, "must be a finite number"),
    ("rate_limits.yaml", "default:\n  capacity: 5\n  refill_rate: .nan\n", 3, "must be a finite number"),
    ("auth.yaml", "? [a, b]\n: 1\n", 1, "mapping key must be a plain value"),
    ("rate_limits.yaml", "default:\n  capacity: 1" + "0" * 400 + "\n  refill_rate: 1\n", 2,
     "must be a finite number"),
    ("routing.yaml", "rerank:\n  - model: r\n    served_name: x\n    max_top_k: 1.5\n    upstream:\n"
                     "      type: local\n", 4, "'max_top_k' must be a whole number"),
    ("auth.yaml", "api_keys: []\n1: x\nallow_anonymous_without_api_keys: true\n", 2, "'1'"),
    # the adapter contract, checked before any load: options by schema, kinds, validate_route
    ("routing.yaml", "embeddings:\n  - model: e\n    upstream:\n      type: infinity\n      url: http://h:1\n"
                     "      pool_sise: 8\n", 6, "unknown option 'pool_sise' for upstream type 'infinity'"),
    ("routing.yaml", "embeddings:\n  - model: e\n    upstream:\n      type: rerank\n      url: http://h:1\n",
     4, "upstream type 'rerank' serves rerank models only, not embeddings"),
    ("routing.yaml", "embeddings:\n  - model: q\n    upstream:\n      type: qwen3\n      url: https://h/v1\n"
                     "    options:\n      query_instruction: a\n      query_prefix: b\n", 2,
     "give 'query_instruction' or 'query_prefix', not both"),
    ("routing.yaml", "embeddings:\n  - model: e\n    upstream: {type: local}\n    options:\n"
                     "      model_pth: x\n", 5, "unknown option 'model_pth'"),
    ("routing.yaml", "embeddings:\n  - model: e\n    upstream: {type: infinity}\n", 2, "needs 'url' or 'urls'"),
])
def test_values_that_would_break_requests_are_rejected(tmp_path, file, text, line, words):
    write_good(tmp_path)
    write_text(tmp_path / file, text)
    result = _check_config(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / file}:{line}: " in result.stderr and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("file, content", [("routing.yaml", b"embeddings: []\x00\n"),
                                           ("auth.yaml", "api_keys: []".encode("utf-16")),
                                           ("key.bin", bytes(range(256)))])
def test_files_that_are_not_text_are_named_not_a_traceback(tmp_path, file, content):
    write_good(tmp_path)
    if file == "key.bin":  # a key_file that is not text: its contents are never echoed
        write_text(tmp_path / "auth.yaml", f"api_keys:\n  - key_file: {tmp_path / file}\n")
    (tmp_path / file).write_bytes(content)
    result = _check_config(tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    named = tmp_path / ("auth.yaml" if file == "key.bin" else file)
    assert str(named) in result.stderr


def test_credentials_in_a_bad_url_are_not_echoed(tmp_path):
    write_good(tmp_path)
    routing = (tmp_path / "routing.yaml").read_text().replace('type: "local"', 'type: "infinity"\n      url: "htp://user:hunter2@h:1"')
    write_text(tmp_path / "routing.yaml", routing)
    result = _check_config(tmp_path)
    assert result.returncode == 1 and "must start with http" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("command, variable", [("check-config", "ROUTER_REQUEST_TIMEOUT_SECONDS"),
                                               ("serve", "ROUTER_MAX_INPUTS"),
                                               ("serve-rerank", "RERANK_MAX_BATCH_SIZE")])
def test_a_bad_number_in_the_environment_is_named_not_a_traceback(tmp_path, command, variable):
    write_good(tmp_path)
    env = base_env(ROUTER_ROUTING_PATH=str(tmp_path / "routing.yaml"), ROUTER_AUTH_PATH=str(tmp_path / "auth.yaml"),
                   ROUTER_RATE_LIMITS_PATH=str(tmp_path / "rate_limits.yaml"), **{variable: "ten"})
    argv = [sys.executable, "-m", "core.cli", command] + ([] if command == "check-config" else ["--port", "1"])
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert variable in result.stderr and "'ten'" in result.stderr
    assert "Traceback" not in result.stderr
