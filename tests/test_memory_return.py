"""Memory that comes back: after one large request, once the router is quiet, its resident memory
returns near what it was before (glibc's freed arenas handed back with malloc_trim), where it
used to stay near the request's peak. A real router on the embedded MiniLM; the bound is generous
(RSS is not exact), and the trim itself is checked in the log."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from core.memory import MALLOC_TRIM, MemoryReturn
from core.offload import STATS
from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import start_router

TRIMMED = "freed memory to the system"


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _embed(url: str, inputs: list[str]) -> int:
    body = json.dumps({"model": "minilm", "input": inputs, "encoding_format": "float"}).encode()
    request = urllib.request.Request(url + "/v1/embeddings", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as resp:
        resp.read()
        return resp.status


@pytest.mark.skipif(MALLOC_TRIM is None or not os.path.exists("/proc/self/statm"), reason="glibc on Linux only")
def test_after_a_large_request_the_routers_memory_comes_back_when_quiet(tmp_path):
    config = copy_default_configs(tmp_path / "config")
    limits = read_yaml(config / "rate_limits.yaml")
    limits["anonymous"] = {"capacity": 10000, "refill_rate": 10000}
    write_yaml(config / "rate_limits.yaml", limits)
    routing = read_yaml(config / "routing.yaml")
    routing["embeddings"][0]["upstream"]["timeout_seconds"] = 240  # any machine finishes it: memory is tested
    write_yaml(config / "routing.yaml", routing)
    router, url = start_router(config, tmp_path / "router.log")
    try:
        for k in range(8):
            assert _embed(url, [f"warm-up sentence {k}"] * 4) == 200
        time.sleep(4)  # (loading the config was large work too: trimmed by now)
        baseline, trims = _rss(router.proc.pid), router.log_text().count(TRIMMED)
        assert _embed(url, [f"sentence number {i} about a topic of some length" for i in range(2048)]) == 200
        peak = _rss(router.proc.pid)
        deadline = time.monotonic() + 30
        while router.log_text().count(TRIMMED) == trims and time.monotonic() < deadline:
            time.sleep(0.25)
        assert router.log_text().count(TRIMMED) > trims
        after = _rss(router.proc.pid)
        assert after <= min(peak, 1.5 * baseline + (150 << 20)), (baseline >> 20, peak >> 20, after >> 20)
    finally:
        router.stop()


async def test_it_trims_only_after_large_work_once_quiet_and_not_too_often():
    now = [1000.0]
    trims: list[int] = []
    memory = MemoryReturn(quiet_s=2.0, min_interval_s=10.0, trim=lambda: trims.append(1) or 0, clock=lambda: now[0])
    assert not await memory.trim_if_due()  # no large work yet
    STATS.jobs += 1  # a large job ran ...
    STATS.last_done = now[0]
    assert not await memory.trim_if_due()  # ... just now: not quiet yet
    now[0] += 2.5
    STATS.running += 1
    assert not await memory.trim_if_due()  # another one is running
    STATS.running -= 1
    assert await memory.trim_if_due() and trims == [1]
    assert not await memory.trim_if_due()  # nothing new since
    STATS.jobs += 1
    STATS.last_done = now[0]
    now[0] += 3
    assert not await memory.trim_if_due()  # new work, quiet, but trimmed 3 s ago
    now[0] += 10
    assert await memory.trim_if_due() and trims == [1, 1]
