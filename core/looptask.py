"""A background task of the gateway's own (the loop-lag watchdog, the memory return): started on
the running loop, stopped by cancelling it and waiting until it has ended."""

from __future__ import annotations

import asyncio
import contextlib


class LoopTask:
    task_name = "gateway-task"
    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
