"""Dynamic micro-batching: for in-process models and for coalescing upstream calls.

Concurrent requests for one model are queued; a single worker takes items from the head of
the queue up to ``max_batch_size`` (waiting at most ``max_wait_s`` for the batch to fill)
and runs ``fn`` on them. A plain function (a model) runs in a worker thread, so the event
loop never blocks; a coroutine function (an upstream call) is awaited on the loop, with up
to ``max_in_flight`` batches outstanding so a slow call does not hold back the next batch.
A request larger than one batch is split across batches; one that waits longer than
``queue_timeout_s`` before any of its items start is failed with ServiceUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

from core.errors import ServiceUnavailable

In = TypeVar("In")  # what a batch takes (a text, a pair)
Out = TypeVar("Out")  # what it gives per item (a vector, a score)


class _Job(Generic[In, Out]):
    __slots__ = ("items", "next", "done", "results", "future", "enqueued")

    def __init__(self, items: Sequence[In], future: asyncio.Future) -> None:
        self.items = items
        self.next = 0
        self.done = 0
        self.results: list[Any] = [None] * len(items)
        self.future = future
        self.enqueued = time.monotonic()


# A batch function gives one result per item: a list, or an array with a row per item.
BatchResult = Sequence[Out] | np.ndarray
BatchFn = Callable[[list[In]], BatchResult[Out]] | Callable[[list[In]], Awaitable[BatchResult[Out]]]


class MicroBatcher(Generic[In, Out]):
    def __init__(self, fn: BatchFn, *, max_batch_size: int = 32,
                 max_wait_s: float = 0.002, queue_timeout_s: float | None = None, name: str = "model",
                 on_batch: Callable[[int], None] | None = None, max_in_flight: int = 1) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_timeout_s = queue_timeout_s
        self.name = name
        self.on_batch = on_batch
        self._queue: deque[_Job[In, Out]] = deque()
        self._pending_items = 0
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        # A model runs one batch at a time (it uses every core for it); an upstream call may overlap.
        self._slots = asyncio.Semaphore(max_in_flight if self.is_async else 1)
        self._running: set[asyncio.Task] = set()
        self._active = 0
        # One thread per model: the model itself uses every core for one batch.
        self._executor = None if self.is_async else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"batch-{name}")

    @property
    def queued_items(self) -> int:
        return self._pending_items

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch running: safe to drop."""
        return not self._queue and self._active == 0

    def cancel_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def submit(self, items: Sequence[In]) -> list[Out]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            # A fresh context: the long-lived worker must not carry the request id (or any other
            # context variable) of whichever request happened to start it.
            self._worker = loop.create_task(self._run(), name=f"batcher-{self.name}", context=contextvars.Context())
        job: _Job[In, Out] = _Job(items, loop.create_future())
        self._queue.append(job)
        self._pending_items += len(items)
        self._wakeup.set()
        if self.queue_timeout_s is not None:
            # A timer, not only a check when the next batch is taken: that can be long after the
            # deadline when the batch ahead is slow.
            timer = loop.call_later(self.queue_timeout_s, self._expire, job)
            job.future.add_done_callback(lambda _: timer.cancel())
        return await job.future

    def _expire(self, job: _Job[In, Out]) -> None:
        if job.next == 0 and not job.future.done():  # none of its items has started: give up on it
            job.future.set_exception(self._queue_timeout())

    def _queue_timeout(self) -> ServiceUnavailable:
        waited = (self.queue_timeout_s or 0.0) * 1000
        return ServiceUnavailable(f"{self.name}: request waited over {waited:.0f} ms "
                                  "in the queue", code="queue_timeout")

    def _take_batch(self) -> list[tuple[_Job[In, Out], int, int]]:
        parts: list[tuple[_Job[In, Out], int, int]] = []
        room = self.max_batch_size
        now = time.monotonic()
        while self._queue and room > 0:
            job = self._queue[0]
            if job.future.done():  # caller went away
                self._queue.popleft()
                self._pending_items -= len(job.items) - job.next
                continue
            if (job.next == 0 and self.queue_timeout_s is not None
                    and now - job.enqueued > self.queue_timeout_s):
                self._queue.popleft()
                self._pending_items -= len(job.items)
                job.future.set_exception(self._queue_timeout())
                continue
            take = min(room, len(job.items) - job.next)
            parts.append((job, job.next, take))
            job.next += take
            room -= take
            self._pending_items -= take
            if job.next == len(job.items):
                self._queue.popleft()
        return parts

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._pending_items < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            # Items keep arriving while every slot is busy: they join the next, fuller batch.
            await self._slots.acquire()
            parts = self._take_batch()
            if not parts:
                self._slots.release()
                continue
            if not self.is_async:
                await self._execute(parts)  # a model: batches back to back, in its one thread
            else:
                task = asyncio.get_running_loop().create_task(self._execute(parts))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _execute(self, parts: list[tuple[_Job[In, Out], int, int]]) -> None:
        self._active += 1
        try:
            batch = [item for job, start, n in parts for item in job.items[start:start + n]]
            try:
                if self.on_batch is not None:  # inside: a failing observer fails this batch, not the worker
                    self.on_batch(len(batch))
                if self.is_async:
                    outputs = await self.fn(batch)  # type: ignore[misc]
                else:
                    outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.fn, batch)
                if len(outputs) != len(batch):
                    raise RuntimeError(f"{self.name} returned {len(outputs)} outputs for {len(batch)} inputs")
            except Exception as exc:  # the call failed: fail every request in this batch
                for job, _, _ in parts:
                    if not job.future.done():
                        job.future.set_exception(exc)
                return
            offset = 0
            for job, start, n in parts:
                job.results[start:start + n] = outputs[offset:offset + n]
                offset += n
                job.done += n
                if job.done == len(job.items) and not job.future.done():
                    job.future.set_result(job.results)
        finally:
            self._active -= 1
            self._slots.release()

    async def close(self) -> None:
        for task in [self._worker, *self._running]:
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was its jobs' to see
                await task
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(ServiceUnavailable(f"{self.name} is shutting down"))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
