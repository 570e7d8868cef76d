"""A newcomer's first hour: one version everywhere, check-config that finds what would fail (models
not on disk, a key naming a missing model) from any folder, a port clash in one line, a second
Ctrl-C that exits at once, a log of JSON lines only, and a fixed file's recovery said aloud."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from core.version import version
from tests.support.configs import copy_default_configs, write_yaml
from tests.support.processes import ROOT, base_env, free_port

MAAS = [sys.executable, "-m", "core.cli"]


def _maas(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MAAS, *args], cwd=cwd, env={**base_env(), "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)


def test_one_version_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = next(line.split('"')[1] for line in pyproject.splitlines() if line.startswith("version = "))
    assert version() == declared
    assert _maas("--version").stdout.strip() == f"maas {declared}"
    from core.openapi import openapi_document

    assert openapi_document(())["info"]["version"] == declared


def test_help_shows_the_defaults():
    out = _maas("serve", "--help").stdout
    assert "(default: 8000)" in out and "8085" in out  # the container's port, and the quick start's


def test_check_config_takes_a_folder_from_anywhere(tmp_path):
    configs = copy_default_configs(tmp_path / "configs")
    result = _maas("check-config", str(configs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"ok: {configs / 'routing.yaml'}" in result.stdout
    wrong = _maas("check-config", str(tmp_path / "configs" / "routing.yml"), cwd=tmp_path)
    assert wrong.returncode == 1 and "name a folder" in wrong.stderr


def _broken(tmp_path):
    configs = copy_default_configs(tmp_path / "configs")
    routing = yaml.safe_load((configs / "routing.yaml").read_text())
    routing["embeddings"].append({"model": "absent", "served_name": "nobody/no-such-model-here",
                                  "upstream": {"type": "local"}})
    write_yaml(configs / "routing.yaml", routing)
    write_yaml(configs / "auth.yaml", {"api_keys": [{"name": "team", "key": "sk-test-newcomer-1",
                                                     "models": ["minilmm", "rerank-base"]}]})
    return configs


def test_check_config_finds_a_model_not_on_disk_and_a_key_naming_a_missing_model(tmp_path):
    configs = _broken(tmp_path)
    result = _maas("check-config", str(configs), HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert any(f"{configs / 'routing.yaml'}:" in line and "'nobody/no-such-model-here' is not on this machine" in line
               for line in lines), result.stderr
    assert any(f"{configs / 'auth.yaml'}:4:" in line and "'minilmm'" in line and "did you mean 'minilm'" in line
               for line in lines), result.stderr


async def test_a_live_reload_logs_the_findings_and_serves_anyway(tmp_path, caplog):
    from core.config import Settings
    from core.gateway import Gateway

    configs = _broken(tmp_path)
    routing = yaml.safe_load((configs / "routing.yaml").read_text())
    routing["embeddings"] = [e for e in routing["embeddings"] if e["model"] != "absent"]
    write_yaml(configs / "routing.yaml", routing)  # only the key's typo is left
    settings = Settings(routing_path=str(configs / "routing.yaml"), auth_path=str(configs / "auth.yaml"),
                        rate_limits_path=str(configs / "rate_limits.yaml"))
    gateway = Gateway(settings)
    with caplog.at_level(logging.WARNING, logger="maas.gateway"):
        snapshot = await gateway.load()
    assert gateway.snapshot is snapshot  # a warning, never a rejected config
    assert any("minilmm" in r.getMessage() for r in caplog.records)
    await gateway.close()


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _maas("serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"maas: port {port} on 127.0.0.1 is in use (another process listens there); pick another with --port "
        "(PORT for scripts/run.sh)"]


def _router(tmp_path, configs):
    port = free_port()
    log = open(tmp_path / "router.log", "wb")  # noqa: SIM115 - the process writes it until it stops
    env = {**base_env(), "PYTHONPATH": str(ROOT), "ROUTER_ROUTING_PATH": str(configs / "routing.yaml"),
           "ROUTER_AUTH_PATH": str(configs / "auth.yaml"), "ROUTER_RATE_LIMITS_PATH": str(configs / "rate_limits.yaml"),
           "ROUTER_DRAIN_SECONDS": "30", "ROUTER_ROUTING_RELOAD_INTERVAL_SECONDS": "0.2"}
    proc = subprocess.Popen([*MAAS, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _wait(url: str, proc) -> None:
    import urllib.request

    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError("the router exited") from None
        time.sleep(0.1)
    raise AssertionError("the router never became ready")


def test_a_second_ctrl_c_exits_at_once_and_the_log_is_json_lines_only(tmp_path):
    configs = copy_default_configs(tmp_path / "configs")
    proc, url = _router(tmp_path, configs)
    try:
        _wait(url, proc)
        write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "x", "upstream": {"type": "nosuch"}}]})
        time.sleep(1.0)  # the watcher rejects it
        copy_default_configs(configs)  # the good file is back
        for _ in range(100):
            if "config accepted again" in (tmp_path / "router.log").read_text():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # drains for ROUTER_DRAIN_SECONDS (30 s)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # the operator wants out now
        assert proc.wait(timeout=10) == 130  # well before the drain would have ended
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "router.log").read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    messages = [r.get("msg", "") for r in records]
    assert any("restart it" in m for m in messages)  # the unknown type's hint
    assert any(m.startswith("config accepted again") for m in messages)
    assert any("stopping at once" in m for m in messages)


@pytest.mark.parametrize("script", ["run.sh"])
def test_the_quick_start_listens_on_loopback_unless_told(script):
    text = (ROOT / "scripts" / script).read_text()
    assert '--host "${HOST:-127.0.0.1}"' in text and '--port "${PORT:-8085}"' in text


def test_the_shell_completion_completes_commands_and_options():
    script = _maas("completion").stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _maas; '
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30).stdout.split()

    assert complete("maas", "ch") == ["check-config"]
    assert complete("maas", "serve", "--p") == ["--port"]
    assert "--fields" in complete("maas", "check-config", "--")
