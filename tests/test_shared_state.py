"""Shared state that cannot hurt itself: the rate limiter's Redis and the cache's are two
instances (one host and port is refused at start and by `maas check-config`, naming both
variables, never the URLs); a full cache Redis costs the cache's writes only, never its reads;
and the cache's error log never carries the raw bytes of a failed command."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest
import redis

from core.config import Settings
from core.errors import ConfigError
from core.gateway import Gateway
from tests.support.processes import ROOT, base_env
from tests.support.redis_server import redis_binary, start_redis
from tests.test_cache import _client, _embed

SAME = [("redis://:secret@redis:6379/0", "redis://:secret@redis:6379/1"),  # another database, one instance
        ("redis://localhost/0", "redis://127.0.0.1:6379/3"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock?db=2")]


@pytest.mark.parametrize(("limiter", "cache"), SAME)
def test_one_redis_instance_for_both_is_refused_at_start_naming_both_variables(limiter, cache):
    env = {"ROUTER_REDIS_URL": limiter, "ROUTER_CACHE_REDIS_URL": cache}
    with pytest.raises(ConfigError) as caught:
        Gateway(Settings.from_env(env))
    message = str(caught.value)
    assert "ROUTER_REDIS_URL" in message and "ROUTER_CACHE_REDIS_URL" in message
    assert "secret" not in message and "redis://" not in message


def test_two_instances_are_accepted():
    Gateway(Settings.from_env({"ROUTER_REDIS_URL": "redis://limits:6379/0",
                               "ROUTER_CACHE_REDIS_URL": "redis://cache:6379/0"}))
    Gateway(Settings.from_env({"ROUTER_REDIS_URL": "redis://redis:6379/0",
                               "ROUTER_CACHE_REDIS_URL": "redis://redis:6380/0"}))


def test_check_config_refuses_one_instance_for_both():
    env = base_env(ROUTER_REDIS_URL="redis://:pw@redis:6379/0", ROUTER_CACHE_REDIS_URL="redis://:pw@redis:6379/1")
    result = subprocess.run([sys.executable, "-m", "core.cli", "check-config"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "ROUTER_REDIS_URL" in result.stderr and "ROUTER_CACHE_REDIS_URL" in result.stderr
    assert "pw@" not in result.stderr


@pytest.mark.redis
async def test_a_full_cache_redis_costs_the_writes_never_the_reads(aiohttp_client, tmp_path, caplog):
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh test installs it)")
    server, url = start_redis(tmp_path / "redis", binary)
    try:
        client = await _client(aiohttp_client, tmp_path / "router", environ={"ROUTER_CACHE_REDIS_URL": url})
        resp, _ = await _embed(client, ["held", "kept"])
        assert resp.headers["X-Cache-Hits"] == "0"
        admin = redis.Redis.from_url(url)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # full: every write is refused with OOM, reads still answer
        caplog.set_level(logging.ERROR, logger="maas.cache")
        hits = []
        for i in range(6):  # each request's write fails; the next one's reads must not pay for it
            resp, _ = await _embed(client, ["held", "kept", f"new {i}"])
            hits.append(resp.headers["X-Cache-Hits"])
            await asyncio.sleep(0)
        assert hits == ["2"] * 6  # a hit rate of 2/3, as before Redis filled up
        assert admin.get(b"maas:emb:x") is None and admin.dbsize() == 2
        lines = [r.getMessage() for r in caplog.records if r.name == "maas.cache"]
        assert lines and all("maxmemory" in line and "maas:emb" not in line and "SET" not in line for line in lines)
        assert len(lines) == 1  # logged once while writes stay refused
        admin.close()
    finally:
        server.stop()
