"""The gateway measures its own event-loop lag and exports it (``maas_event_loop_lag_seconds``,
with an alert in deploy/monitoring/alerts.yaml): a stall is seen, and kept in view for the
window a scrape needs."""

from __future__ import annotations

import asyncio
import time

from core.metrics import GatewayMetrics
from core.watchdog import LoopLagWatchdog
from tests.support.inprocess import serve, write_configs


def _lag(metrics: GatewayMetrics) -> float:
    return metrics.registry.get_sample_value("maas_event_loop_lag_seconds")


async def test_a_blocked_loop_shows_as_lag_and_stays_in_view_for_the_window():
    metrics = GatewayMetrics()
    watchdog = LoopLagWatchdog(metrics, interval_s=0.01, window_s=3600)
    watchdog.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.4)  # noqa: ASYNC251 - the stall under test: the loop can run nothing else meanwhile
        await asyncio.sleep(0.1)  # the watchdog wakes late, by about the stall, and later ticks are on time
        # a tick was due within interval_s of the stall's start, so it fired at least this late
        assert _lag(metrics) >= 0.4 - 0.01
    finally:
        await watchdog.stop()


def test_the_worst_lag_leaves_the_gauge_after_its_window():
    metrics = GatewayMetrics()
    watchdog = LoopLagWatchdog(metrics, window_s=30)
    watchdog.record(100.0, 2.0)
    watchdog.record(110.0, 0.1)
    assert _lag(metrics) == 2.0
    watchdog.record(131.0, 0.05)
    assert _lag(metrics) == 0.1
    watchdog.record(200.0, 0.0)
    assert _lag(metrics) == 0.0


async def test_the_router_exports_its_loop_lag(aiohttp_client, tmp_path):
    client = await serve(aiohttp_client, write_configs(tmp_path))
    text = await (await client.get("/metrics")).text()
    assert "maas_event_loop_lag_seconds " in text
