"""Shared fixtures: real servers on loopback, started once per session where that is safe."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.support.configs import copy_default_configs, read_yaml, write_yaml  # noqa: E402
from tests.support.processes import start_router  # noqa: E402


@pytest.fixture(scope="session")
def default_router(tmp_path_factory):
    """The router on the embedded default config (in-process MiniLM and ms-marco cross-encoder)."""
    work = tmp_path_factory.mktemp("default-router")
    config_dir = copy_default_configs(work / "configs")
    # Many tests share this one anonymous caller: give it room so a fast machine never sees 429s
    # here (rate limiting has its own tests).
    limits = read_yaml(config_dir / "rate_limits.yaml")
    limits["anonymous"] = {"capacity": 10000, "refill_rate": 10000}
    write_yaml(config_dir / "rate_limits.yaml", limits)
    server, url = start_router(config_dir, work / "router.log")
    server.url = url
    yield server
    server.stop()


@pytest.fixture(scope="session")
def router_url(default_router) -> str:
    return default_router.url


@pytest.fixture(scope="session")
def infinity_server(tmp_path_factory):
    """A real infinity-emb server (its own venv) serving the packaged MiniLM as ``minilm``.

    Started once per session (6-25 s). INFINITY_MAX_CLIENT_BATCH_SIZE is small so a test can
    make Infinity itself reject a request with its FastAPI validation error.
    """
    from tests.support.upstreams import infinity_venv, start_infinity

    if not (infinity_venv() / "bin" / "infinity_emb").exists():
        pytest.skip(f"no infinity-emb venv at {infinity_venv()} (scripts/bootstrap.sh test creates it; "
                    "MAAS_INFINITY_VENV overrides the path)")
    server, url = start_infinity(tmp_path_factory.mktemp("infinity") / "infinity.log",
                                 INFINITY_MAX_CLIENT_BATCH_SIZE="16")
    server.url = url
    yield server
    server.stop()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where a test installs entry-point plugins (tests.test_plugin_precedence._install)."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder
