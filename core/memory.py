"""Memory that comes back after a large request.

A large request (2,048 inputs, a long rerank, a big answer) allocates hundreds of MB in many
small pieces: the parsed JSON, the tokenizer's encodings, the vectors and their rendering. Python
and numpy free them when the request ends, but glibc's malloc keeps freed memory in its arenas
for reuse, so the process's RSS stays near its peak for good (what an orchestrator's memory limit
and the node's other pods see). ``malloc_trim(0)`` hands the free pages of every arena back to the
system.

``MemoryReturn`` does that once the gateway is quiet after large work: large work is what runs in
the offload pool (``core.offload.STATS``), so when a job ran since the last trim, none runs now
and none ended in the last ``quiet_s``, it trims, in a thread of its own (it walks every arena; a
few ms to a few hundred), at most once every ``min_interval_s``. Small requests never trigger it.
Where the C library has no ``malloc_trim`` (musl, macOS) it does nothing. Deployments also cap
glibc's arenas (``MALLOC_ARENA_MAX=2`` in the image and the quick start), which bounds how much
freed memory can sit in per-thread arenas to begin with.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

from core.looptask import LoopTask
from core.offload import STATS

log = logging.getLogger("maas.memory")


def _load_trim() -> Callable[[], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


MALLOC_TRIM = _load_trim()


def rss_bytes() -> int:
    """This process's resident memory (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class MemoryReturn(LoopTask):
    task_name = "memory-return"

    def __init__(self, *, interval_s: float = 1.0, quiet_s: float = 2.0, min_interval_s: float = 10.0,
                 trim: Callable[[], int] | None = MALLOC_TRIM, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.min_interval_s = min_interval_s
        self._trim = trim
        self._clock = clock
        self._seen_jobs = STATS.jobs  # large jobs already accounted for
        self._last_trim = float("-inf")
        self.trims = 0

    def start(self) -> None:
        if self._trim is not None:
            super().start()

    def due(self) -> bool:
        """Large work ran since the last trim, none runs now, and the gateway has been quiet."""
        now = self._clock()
        return (STATS.jobs != self._seen_jobs and STATS.running == 0 and now - STATS.last_done >= self.quiet_s
                and now - self._last_trim >= self.min_interval_s)

    async def trim_if_due(self) -> bool:
        if self._trim is None or not self.due():
            return False
        self._seen_jobs, self._last_trim = STATS.jobs, self._clock()
        before = rss_bytes()
        await asyncio.to_thread(self._trim)  # not the offload pool: this is no request's work
        self.trims += 1
        after = rss_bytes()
        log.info("returned %d MB of freed memory to the system after large requests", (before - after) >> 20,
                 extra={"rss_before_mb": before >> 20, "rss_after_mb": after >> 20})
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.trim_if_due()
