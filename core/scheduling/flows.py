"""The scheduler's bookkeeping: a queued job, a tenant's flow of jobs, a batch being formed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core.scheduling.capacity import Load
from core.scheduling.work import Tenant, Work

# A batch's group before its first item sets it: any job may start a batch.
UNSET: Any = object()


class Shape:
    """How a job's items would be batched on their own: their order (similar lengths together: a
    batch costs its size times its longest item) and each item's part of the model's work (a
    fraction of a call, the padded tokens of its place in a batch)."""

    __slots__ = ("order", "calls", "padded", "load")

    def __init__(self, work: Work, costs: list[float]) -> None:
        n = len(costs)
        if not work.split:  # one call of its own
            self.order = list(range(n))
            self.calls, self.padded = [1.0] + [0.0] * (n - 1), [sum(costs)] + [0.0] * (n - 1)
        else:
            self.order = sorted(range(n), key=costs.__getitem__)
            self.calls, self.padded = [0.0] * n, [0.0] * n
            chunks: list[list[int]] = [[]]
            for i in self.order:
                chunk = chunks[-1]
                if chunk and (len(chunk) >= work.max_batch_size or (
                        work.max_batch_tokens is not None and (len(chunk) + 1) * costs[i] > work.max_batch_tokens)):
                    chunks.append(chunk := [])
                chunk.append(i)
            for chunk in chunks:
                for j in chunk:
                    self.calls[j], self.padded[j] = 1.0 / len(chunk), costs[chunk[-1]]
        self.load = Load(sum(self.calls), sum(self.padded))

    def of(self, picked: list[int]) -> Load:
        return Load(sum(self.calls[i] for i in picked), sum(self.padded[i] for i in picked))


class Job:
    __slots__ = ("work", "costs", "order", "next", "done", "results", "future", "enqueued", "seq", "flow",
                 "cost_left", "task", "shape", "load_left")

    def __init__(self, work: Work, costs: list[float], future: asyncio.Future, seq: int, flow: TenantFlow,
                 shape: Shape) -> None:
        self.work = work
        self.costs = costs
        n = len(costs)
        self.shape = shape
        self.order = shape.order
        self.load_left = shape.load  # not yet taken, in the model's terms
        self.next = 0  # position in ``order`` of the next item to go
        self.done = 0
        self.results: list[Any] = [None] * n
        self.future = future
        self.enqueued = time.monotonic()
        self.seq = seq
        self.flow = flow
        self.cost_left = sum(costs)  # not yet taken into batches
        self.task: asyncio.Task | None = None  # the batch running this job alone

    @property
    def left(self) -> int:
        return len(self.order) - self.next

    @property
    def live(self) -> bool:
        return self.left > 0 and not self.future.done()

    def head_cost(self) -> float:
        """What its next take costs: one item, or all of a job that is not split."""
        if self.work.split:
            return self.costs[self.order[self.next]]
        return sum(self.costs)


class TenantFlow:
    __slots__ = ("key", "tenant", "jobs", "deficit", "in_turn", "items", "cost", "load", "passed")

    def __init__(self, key: tuple[str, int], tenant: Tenant) -> None:
        self.key = key
        self.tenant = tenant
        self.jobs: list[Job] = []
        self.deficit = 0.0
        self.in_turn = False
        self.passed = False  # left out of the last batch, its inputs too long for it: it starts the next
        self.items = 0  # queued (not yet taken)
        self.cost = 0.0
        self.load = Load()

    def pick(self, group: Any, whole_ok: bool, now: float, rate: float) -> Job | None:
        """The live job that fits the batch and has least work left, less the work the model could
        have done while it waited (``rate`` per second): short requests go first, and a long one
        waiting behind them gains a second of standing for each second it waits. Oldest first on
        a tie, so equal requests are served in turn rather than all at once."""
        best: Job | None = None
        best_key = (0.0, 0)
        for job in self.jobs:
            if not job.live:
                continue
            if group is not UNSET and (not job.work.split or job.work.group != group):
                continue
            if not whole_ok and not job.work.split:
                continue
            key = (job.cost_left - (now - job.enqueued) * rate, job.seq)
            if best is None or key < best_key:
                best, best_key = job, key
        return best


class Ranking:
    """A flow's ``pick`` for the span of forming one batch: its live jobs ranked once (the same
    key, at the same ``now``), then walked in order. Taking items only lowers the taken job's work
    left, which keeps it first, and what a batch accepts only narrows as it fills (its group once
    set, no whole job once it holds an item), so a job passed over stays passed over: each pick
    is O(1) instead of a scan of every queued job (a bulk job queues hundreds of lines)."""

    __slots__ = ("flow", "_order")

    def __init__(self, flow: TenantFlow, now: float, rate: float) -> None:
        self.flow = flow
        live = [job for job in flow.jobs if job.live]
        live.sort(key=lambda job: (job.cost_left - (now - job.enqueued) * rate, job.seq), reverse=True)
        self._order = live  # best last

    def pick(self, group: Any, whole_ok: bool) -> Job | None:
        order = self._order
        while order:
            job = order[-1]
            if job.live and (group is UNSET or (job.work.split and job.work.group == group)) and (
                    whole_ok or job.work.split):
                return job
            order.pop()
        return None


class Batch:
    __slots__ = ("parts", "cost")

    def __init__(self) -> None:
        self.parts: dict[Job, list[int]] = {}
        self.cost = 0.0
