"""The shipped dashboard and alert rules use only metrics the router exports, and promtool
accepts the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.inprocess import serve, write_configs
from tests.support.processes import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
_NAME = re.compile(r"\b(maas_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


async def test_every_metric_in_the_dashboard_and_alerts_is_exported(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path))
    await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"})
    exported = await (await client.get("/metrics")).text()
    families = set(re.findall(r"^# TYPE (\S+) ", exported, re.M))
    samples = set(re.findall(r"^([a-z_]+)[{ ]", exported, re.M))
    used = {name for expr in _expressions() for name in _NAME.findall(expr)}
    assert len(used) >= 10

    def missing(names: set[str]) -> list[str]:
        return sorted(n for n in names if n not in samples and n not in families
                      and not any(n.endswith(s) and n[:-len(s)] in families for s in _SUFFIXES))

    assert not missing(used)
    assert missing({"maas_no_such_metric_total", "maas_requests_total"}) == ["maas_no_such_metric_total"]


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian's prometheus package; scripts/bootstrap.sh test installs it)")
    result = subprocess.run([promtool, "check", "rules", str(MONITORING / "alerts.yaml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout
