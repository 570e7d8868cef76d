"""A fake model that runs each batch only when the test lets it: scheduling order without timing."""

from __future__ import annotations

import asyncio
from typing import Any


class GatedModel:
    """Records every batch it is given; each waits for ``release()`` before answering."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self._permits = asyncio.Semaphore(0)
        self._entered = asyncio.Condition()

    async def run(self, items: list[Any], own: bool) -> list[Any]:
        async with self._entered:
            self.batches.append(list(items))
            self._entered.notify_all()
        await self._permits.acquire()
        return list(items)

    async def started(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` batches have started in all."""
        async def reached() -> None:
            async with self._entered:
                await self._entered.wait_for(lambda: len(self.batches) >= n)

        await asyncio.wait_for(reached(), timeout)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()
