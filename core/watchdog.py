"""The event loop's own lag, measured and exported: a stall (work that should have run off the
loop, a huge config parsed inline) shows as ``maas_event_loop_lag_seconds`` and its alert, and a
warning in the log, instead of only as health checks that time out.

A task sleeps ``interval_s`` and notes how much later than asked it woke: the time the loop was
busy with something else. The gauge holds the worst lag of the last ``window_s`` seconds, so a
scrape every 15 s still sees a stall that ended between two scrapes.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from core.looptask import LoopTask
from core.metrics import GatewayMetrics

log = logging.getLogger("maas.watchdog")

WARN_S = 1.0  # a lag this long is logged too


class LoopLagWatchdog(LoopTask):
    task_name = "loop-lag-watchdog"

    def __init__(self, metrics: GatewayMetrics, *, interval_s: float = 0.25, window_s: float = 30.0) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.window_s = window_s
        self._recent: collections.deque[tuple[float, float]] = collections.deque()  # (when, lag)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self.record(now, max(0.0, now - asked))

    def record(self, now: float, lag: float) -> None:
        recent = self._recent
        while recent and recent[-1][1] <= lag:  # a smaller lag before a bigger one is never the worst
            recent.pop()
        recent.append((now, lag))
        while recent[0][0] < now - self.window_s:
            recent.popleft()
        self.metrics.loop_lag.set(recent[0][1])
        if lag >= WARN_S:
            log.warning("the event loop was blocked for %.2f s", lag, extra={"lag_s": round(lag, 3)})
