"""A third-party adapter is a pip-installed package with an entry point in group ``maas``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from tests.support.processes import ROOT, start_router
from tests.support.upstreams import router_configs

FIXTURE = ROOT / "tests" / "fixtures" / "maas-reverse-adapter"


def test_an_installed_package_adds_an_adapter_type(tmp_path):
    target = tmp_path / "site"
    # No build isolation: the build backend comes from this venv, so no index is needed.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(FIXTURE)], check=True)
    assert list(target.glob("maas_reverse_adapter-*.dist-info"))

    configs = router_configs(tmp_path / "configs", {"embeddings": [
        {"model": "reversed", "upstream": {"type": "reverse", "dim": 3}}]})
    server, url = start_router(configs, tmp_path / "router.log",
                               PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]))
    try:
        answer = httpx.post(url + "/v1/embeddings", timeout=30,
                            json={"model": "reversed", "input": "abc", "encoding_format": "float"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"][0]["embedding"] == [ord("c"), ord("b"), ord("a")]
        # The chain's startup line lists the plugin under its entry-point name.
        assert "reverse" in json.loads(server.log_text().splitlines()[0])["plugins"]
    finally:
        server.stop()
