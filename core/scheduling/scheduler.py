"""The scheduler in front of one model: fair between tenants, bounded, and it drops abandoned work.

Jobs (``core.scheduling.work.Work``) wait in one flow per (tenant, priority). Each batch is
filled by **deficit round robin** over the flows of one priority, in cost units (estimated
tokens): a flow earns ``quantum`` × its weight per turn and spends it on items, so a bulk
request of 2,048 inputs and a one-sentence request from someone else share the next batch
rather than queueing one behind the other. Within a flow, the job with least work left goes
first (a long one gains standing as it waits), so one tenant's small request is not stuck
behind its own bulk job either.
Interactive flows go before bulk ones, but every ``BULK_EVERY``-th batch goes to bulk work
when there is some: bulk is slowed, never starved.

A batch starts once it is full or its oldest job has waited ``max_wait_s``, and only while
fewer than ``max_in_flight`` batches run: work arriving meanwhile joins a later, fuller batch.

**Admission** (``core.scheduling.admission``): new work over the tenant's or the model's bounds,
or that could not finish before its deadline, is refused at once (429, 413 or 503, with a
Retry-After where waiting helps), estimated with the model's ``Capacity``: its batch time
fitted from the batches it ran (``core.scheduling.capacity``).

**Cancellation.** When the caller stops waiting (its client left, its deadline passed), the
job's queued items leave the queue and the counts at once; a batch that has not started
skips them, and a job running alone in its batch is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.errors import ServiceUnavailable
from core.scheduling.admission import MARGIN, Arrival, admit, alone_seconds, too_large
from core.scheduling.capacity import Capacity, Load
from core.scheduling.flows import Job, Shape, TenantFlow
from core.scheduling.work import QueueObserver, Work
from core.scheduling.worker import QUANTUM, BatchWorker
from core.slots import Slots

T = TypeVar("T")


class Scheduler(BatchWorker):
    def __init__(self, name: str, *, max_in_flight: int = 1, queue_timeout_s: float | None = None,
                 observer: QueueObserver | None = None, quantum: float = QUANTUM,
                 clock: Callable[[], float] = time.perf_counter, speed: tuple[float, float] | None = None,
                 spread: bool = False) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if quantum <= 0:
            raise ValueError("quantum must be positive")
        self.name = name
        self.quantum = quantum
        self.max_in_flight = max_in_flight
        self.spread = spread  # queued inputs shared out over the free slots (``Batching.spread``)
        self.queue_timeout_s = queue_timeout_s
        self.observer = observer
        self.queued_items = 0
        self.queued_cost = 0.0
        self.queued_load = Load()
        self._flows: dict[tuple[str, int], TenantFlow] = {}
        self._rings: tuple[deque[TenantFlow], deque[TenantFlow]] = (deque(), deque())
        self._jobs: dict[int, Job] = {}  # queued jobs in arrival order: the oldest sets the wait window
        self._seq = 0
        self._bulk_wait = 0  # batches given to interactive work while bulk work waited
        self._slots = Slots(max_in_flight)
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._active = 0
        self._rest_now = False
        self.capacity = Capacity(max_in_flight, speed=speed)  # what admission and Retry-After estimate with
        self._clock = clock  # times batches (a test's fake model may keep its own)

    # -- the caller's side ---------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch running: safe to drop."""
        return not self._jobs and self._active == 0

    async def submit(self, work: Work) -> list[Any]:
        """The outputs of ``work.run`` for every item, in item order."""
        items = work.items
        if not items:
            return []
        costs = [max(1.0, float(c)) for c in work.costs] if work.costs is not None else [1.0] * len(items)
        if len(costs) != len(items):
            raise ValueError("one cost per item")
        if not work.split and self.can_call_now():
            return await self._run_now(work, costs)
        loop = asyncio.get_running_loop()
        key = (work.tenant.name, work.tenant.priority)
        flow = self._flows.get(key)
        shape = Shape(work, costs)
        self._admit(work, flow, len(items), shape.load, loop.time())
        if flow is None:
            flow = self._flows[key] = TenantFlow(key, work.tenant)
        self._seq += 1
        job = Job(work, costs, loop.create_future(), self._seq, flow, shape)
        ring = self._rings[work.tenant.priority]
        if flow not in ring:
            ring.append(flow)
        flow.jobs.append(job)
        flow.items += len(items)
        flow.cost += sum(costs)
        flow.load += shape.load
        self.queued_items += len(items)
        self.queued_cost += sum(costs)
        self.queued_load += shape.load
        self._jobs[job.seq] = job
        self._moved()
        job.future.add_done_callback(lambda _: self._settled(job))
        if self._worker is None or self._worker.done():
            # A fresh context: the long-lived worker must not carry the request id (or any other
            # context variable) of whichever request happened to start it.
            self._worker = loop.create_task(self._run(), name=f"scheduler-{self.name}", context=contextvars.Context())
        self._wakeup.set()
        if self.queue_timeout_s is not None:
            timer = loop.call_later(self.queue_timeout_s, self._expire, job)
            job.future.add_done_callback(lambda _: timer.cancel())
        return await job.future  # a cancelled caller cancels the future: _settled drops its items

    async def _run_now(self, work: Work, costs: list[float]) -> list[Any]:
        """Nothing waits and a call slot is free: a whole request runs in its caller's task, with
        no queue, worker or task switch in between (the common case in front of an HTTP
        upstream). Whoever comes while it runs queues as usual; its caller leaving cancels it."""
        outputs = await self.call_now(lambda: work.run(list(work.items), True), sum(costs), len(work.items),
                                      work.deadline)
        if len(outputs) != len(work.items):
            raise RuntimeError(f"{self.name} returned {len(outputs)} outputs for {len(work.items)} inputs")
        return list(outputs)

    def can_call_now(self) -> bool:
        """Nothing waits and a call slot is free (see ``call_now``)."""
        slots = self._slots  # (``Slots.locked``, inline: asked on every request)
        return not self._jobs and slots.free > 0 and not slots.waiting

    async def call_now(self, fn: Callable[[], Awaitable[T]], cost: float, items: int,
                       deadline: float | None = None) -> T:
        """Run one whole call in the caller's task, holding a slot; only when ``can_call_now()``.
        A call the model could not finish before ``deadline`` is refused (413) instead."""
        alone: float | None = None  # the estimate of this call, once the model is measured
        if deadline is not None and self.capacity.measured:
            alone, left = self.capacity.batch_seconds(cost), deadline - asyncio.get_running_loop().time()
            if 0 < left < alone:
                self._refuse("too_large")
                raise too_large(self.name, items, alone, left, 0.0)
        if not self._slots.take_now():  # free when the caller asked ``can_call_now``; else waits its turn
            await self._slots.take()
        self._active += 1
        started = self._clock()
        try:  # it never waited and is no batch of the worker's: nothing for the queue's metrics
            result = await fn()
        finally:
            self._active -= 1
            self._slots.give()
        self._measured(cost, self._clock() - started, alone)
        return result

    def refuse_unfit(self, work: Work) -> None:
        """Refuse (413) ``work`` now if the idle model could not finish it before its deadline,
        its ``costs`` being a lower bound of its items' tokens (found without tokenizing them):
        what ``submit`` would refuse once they are counted, refused before paying for the count."""
        if work.deadline is None or not work.items or not self.capacity.measured:
            return
        costs = [max(1.0, float(c)) for c in work.costs] if work.costs is not None else [1.0] * len(work.items)
        alone = alone_seconds(work, Shape(work, costs).load, self.capacity)
        left = work.deadline - asyncio.get_running_loop().time()
        # the margin ``submit`` refuses with once the inputs are counted (``call_now``, a whole call
        # on an idle model, refuses only what could not finish at all)
        margin = MARGIN if work.split or not self.can_call_now() else 1.0
        if 0 < left < alone * margin:
            self._refuse("too_large")
            raise too_large(self.name, len(work.items), alone, left, 0.0)

    def _admit(self, work: Work, flow: TenantFlow | None, n: int, load: Load, now: float) -> None:
        mine, mine_load = (flow.items, flow.load) if flow is not None else (0, Load())
        weights = sum(f.tenant.weight for f in self._flows.values()) + (work.tenant.weight if flow is None else 0.0)
        admit(self.name, Arrival(work, n, load, self.queued_items, self.queued_load, mine, mine_load,
                                 work.tenant.weight / weights, now), self.capacity, self._refuse)

    def _refuse(self, reason: str) -> None:
        if self.observer is not None:
            self.observer.refused(reason)

    def _expire(self, job: Job) -> None:
        if job.next == 0 and not job.future.done():  # none of its items has started: give up on it
            waited = (self.queue_timeout_s or 0.0) * 1000
            job.future.set_exception(ServiceUnavailable(f"{self.name}: request waited over {waited:.0f} ms "
                                                        "in the queue", code="queue_timeout"))

    def _settled(self, job: Job) -> None:
        """The job's future is done (answered, failed or abandoned): its queued items go."""
        self._jobs.pop(job.seq, None)
        flow = job.flow
        if job in flow.jobs:
            flow.jobs.remove(job)
        left = job.left
        if left:
            cost, load = job.cost_left, job.load_left
            job.next, job.cost_left, job.load_left = len(job.order), 0.0, Load()
            flow.items -= left
            flow.cost -= cost
            flow.load -= load
            self.queued_items -= left
            self.queued_cost -= cost
            self.queued_load -= load
            self._moved()
            if job.future.cancelled() and self.observer is not None:
                self.observer.cancelled(left)
        if job.future.cancelled() and job.task is not None:  # it runs alone: nobody wants the answer
            job.task.cancel()
        if not flow.jobs:
            self._retire(flow)

    def _retire(self, flow: TenantFlow) -> None:
        ring = self._rings[flow.key[1]]
        if flow in ring:
            ring.remove(flow)
        flow.deficit, flow.in_turn, flow.passed = 0.0, False, False
        self._flows.pop(flow.key, None)

    def cancel_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def close(self) -> None:
        for task in [self._worker, *self._running]:
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was its jobs' to see
                await task
        for job in list(self._jobs.values()):
            if not job.future.done():
                job.future.set_exception(ServiceUnavailable(f"{self.name} is shutting down"))
        self._jobs.clear()

