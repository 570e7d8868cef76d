"""The scheduler's worker: it waits for a batch to fill, forms it by deficit round robin over the
tenants' flows of one priority, and runs it, answering every job its items came from.

``core.scheduling.scheduler.Scheduler`` is the caller's side (submit, admission, cancellation)
over the same state; this is the side its worker task runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.errors import ServiceUnavailable
from core.scheduling.flows import UNSET, Batch, Job, Ranking, TenantFlow
from core.scheduling.work import BULK, INTERACTIVE, QueueObserver

if TYPE_CHECKING:
    from core.scheduling.capacity import Capacity, Load
    from core.slots import Slots

QUANTUM = 64.0  # cost units (tokens) a flow earns per turn: a few short inputs, so batches mix flows
BULK_EVERY = 8  # with interactive work waiting, one batch in BULK_EVERY + 1 still goes to bulk
# Another flow's item longer than a batch's longest joins it only if a full batch padded to its length takes
# at most this many times as long: a one-sentence request does not wait for another tenant's long inputs
# padded into its batch; they start the next batch instead.
PAD_LIMIT = 2.0
WHOLE = 1 << 62  # a batch's share of the queue unless spread over the free slots (Batching.spread)


class BatchWorker:
    """The worker's side of a scheduler (the state is the scheduler's)."""

    name: str
    quantum: float
    observer: QueueObserver | None
    queued_items: int
    queued_cost: float
    queued_load: Load
    _rings: tuple[deque[TenantFlow], deque[TenantFlow]]
    _jobs: dict[int, Job]
    _bulk_wait: int
    _slots: Slots  # the calls in flight, at most ``max_in_flight``
    spread: bool
    _rest_now: bool  # a queue was shared out and free slots take the rest at once
    _wakeup: asyncio.Event
    _running: set[asyncio.Task]
    _active: int
    capacity: Capacity
    _clock: Callable[[], float]

    def _measured(self, padded: float, seconds: float, estimated: float | None = None) -> None:
        """A call of ``padded`` tokens took ``seconds``: the capacity is refitted (and reported).
        ``estimated``: the estimate admission made of it before it ran (else made here)."""
        capacity, observer = self.capacity, self.observer
        if estimated is None and observer is not None and capacity.measured:
            estimated = capacity.batch_seconds(padded)
        capacity.observe(padded, seconds)
        if observer is not None:
            observer.capacity(capacity.fixed, capacity.per_token, seconds, estimated)

    def _moved(self) -> None:
        if self.observer is not None:
            self.observer.depth(self.queued_items)

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            oldest = next(iter(self._jobs.values()))
            deadline = oldest.enqueued + oldest.work.max_wait_s
            # (the rest of a queue shared out goes to the free slots now, beside the batch just taken)
            while (not self._rest_now and self.queued_items < oldest.work.max_batch_size and self._jobs
                   and (remaining := deadline - time.monotonic()) > 0):
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            await self._slots.take()
            batch = self._take()
            if batch is None:
                self._slots.give()
                # What is left is abandoned work whose done callbacks have not run yet: let them.
                await asyncio.sleep(0)
                continue
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            if len(batch.parts) == 1 and not (job := next(iter(batch.parts))).work.split:
                job.task = task
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _priority(self) -> int | None:
        interactive, bulk = self._rings[INTERACTIVE], self._rings[BULK]
        if interactive and (not bulk or self._bulk_wait < BULK_EVERY):
            self._bulk_wait += 1 if bulk else 0
            return INTERACTIVE
        self._bulk_wait = 0
        return BULK if bulk else None

    def _take(self) -> Batch | None:
        """The next batch, by deficit round robin over the flows of one priority."""
        self._rest_now = False
        priority = self._priority()
        if priority is None:
            return None
        ring = self._rings[priority]
        now, rate = time.monotonic(), self.capacity.tokens_per_second()
        if len(ring) > 1:
            self._lead(ring, now, rate)
        ring[0].passed = False  # it leads this batch
        free = self._slots.free + 1  # this batch's slot and those still free
        share = max(1, -(-self.queued_items // free)) if self.spread and len(self._jobs) > 1 else WHOLE
        batch = Batch()
        group: Any = UNSET
        size, longest = 0, 0.0
        limit_items, limit_tokens, full = 1, None, False
        members: set[TenantFlow] = set()  # the flows with items in the batch
        ranks: dict[TenantFlow, Ranking] = {}
        while ring and not full:
            wanted = False  # some flow has work for this batch: go round again, deficits grow each turn
            rounds_short = float("inf")  # turns the closest flow still needs before it can afford its item
            for _ in range(len(ring)):
                if not ring or full:
                    break
                flow = ring[0]
                ranking = ranks.get(flow) or ranks.setdefault(flow, Ranking(flow, now, rate))
                job = ranking.pick(group, not batch.parts)
                if job is None:
                    flow.in_turn = False
                    if any(j.live for j in flow.jobs):
                        ring.rotate(-1)  # it has work, not of this batch's group
                    else:
                        ring.popleft()  # its work is all taken, or abandoned
                        flow.passed = False
                    continue
                wanted, before = True, wanted
                if not flow.in_turn:
                    flow.deficit += self.quantum * flow.tenant.weight
                    flow.in_turn = True
                while job is not None:
                    cost = job.head_cost()
                    if cost > flow.deficit:
                        rounds_short = min(rounds_short, (cost - flow.deficit) / (self.quantum * flow.tenant.weight))
                        break
                    if group is UNSET:
                        group = job.work.group
                        limit_items, limit_tokens = min(job.work.max_batch_size, share), job.work.max_batch_tokens
                        if not job.work.split:  # one batch of its own
                            self._take_items(batch, job, len(job.order))  # (no other flow joins it)
                            flow.deficit -= cost
                            full = True
                            break
                    elif size >= limit_items or (
                            limit_tokens is not None and (size + 1) * max(longest, cost) > limit_tokens):
                        full = True
                        break
                    elif cost > longest and flow not in members and self._pads(limit_items, longest, cost):
                        wanted = before  # its turn ends: its longer work starts a batch of its own
                        flow.passed = True
                        break
                    self._take_items(batch, job, 1)
                    flow.deficit -= cost
                    size += 1
                    members.add(flow)
                    longest = max(longest, cost)
                    job = ranking.pick(group, False)
                if not any(j.live for j in flow.jobs):
                    flow.jobs = [j for j in flow.jobs if not j.future.done()]  # taken, not yet answered
                    ring.remove(flow)
                    flow.deficit, flow.in_turn, flow.passed = 0.0, False, False
                elif not full:  # its turn is over; a flow cut short by a full batch resumes it next time
                    flow.in_turn = False
                    ring.rotate(-1)
            if not wanted:
                break  # nothing more can join this batch
            if not batch.parts and rounds_short > 1:
                # Every flow is short of a large item (a whole request): give them the turns they
                # would earn going round and round, in one step.
                skip = int(rounds_short) - 1
                for flow in ring:
                    flow.deficit += skip * self.quantum * flow.tenant.weight
        self._rest_now = share < WHOLE and self.queued_items > 0 and self._slots.free > 0
        return batch if batch.parts else None

    def _lead(self, ring: deque[TenantFlow], now: float, rate: float) -> None:
        """Who starts the batch: a flow left out of the last one (its inputs too long for it), else
        the flow in turn unless another's next input is so much shorter that the first's would pad
        it past ``PAD_LIMIT``: then the shorter goes first, in a batch of its length, and the
        longer inputs start the batch after it (never passed over twice in a row)."""
        for k, flow in enumerate(ring):
            if flow.passed:
                ring.rotate(-k)
                job = flow.pick(UNSET, True, now, rate)
                if job is not None:  # it can afford its next input: it is not passed over again
                    flow.deficit = max(flow.deficit, job.head_cost())
                return
        heads = [(job.head_cost(), k, job.work.max_batch_size) for k, flow in enumerate(ring)
                 if (job := flow.pick(UNSET, True, now, rate)) is not None]
        if not heads or heads[0][1] != 0:
            return
        shortest, k, size = min(heads)
        if k and self._pads(size, shortest, heads[0][0]):
            ring[0].passed = True  # it leads the batch after this one, whatever this one holds
            ring.rotate(-k)

    def _pads(self, size: int, shorter: float, longer: float) -> bool:
        """Whether a full batch (``size`` items) padded to ``longer`` tokens takes more than
        ``PAD_LIMIT`` times as long as one padded to ``shorter`` (by the model's measured or prior
        speed): once one longer input is in, others as long fill the batch."""
        seconds = self.capacity.batch_seconds
        return seconds(size * longer) > PAD_LIMIT * seconds(size * shorter)

    def _take_items(self, batch: Batch, job: Job, n: int) -> None:
        if job.next == 0:
            if self.observer is not None:
                self.observer.waited(time.monotonic() - job.enqueued)
        picked = job.order[job.next:job.next + n]
        job.next += n
        cost = sum(job.costs[i] for i in picked)
        load = job.shape.of(picked)
        job.cost_left -= cost
        job.load_left -= load
        batch.parts.setdefault(job, []).extend(picked)
        batch.cost += cost
        job.flow.items -= n
        job.flow.cost -= cost
        job.flow.load -= load
        self.queued_items -= n
        self.queued_cost -= cost
        self.queued_load -= load
        if not job.left:
            self._jobs.pop(job.seq, None)
        self._moved()

    async def _execute(self, batch: Batch) -> None:
        self._active += 1
        held = True

        def free() -> None:  # the model's slot, once
            nonlocal held
            if held:
                held = False
                self._active -= 1
                self._slots.give()

        try:
            parts = [(job, idx) for job, idx in batch.parts.items() if not job.future.done()]
            if not parts:
                return  # everyone it was for has gone
            items = [job.work.items[i] for job, idx in parts for i in idx]
            first = parts[0][0]
            started = self._clock()
            try:
                if self.observer is not None:
                    self.observer.batch(len(items))
                outputs = await first.work.run(items, len(parts) == 1)
                if len(outputs) != len(items):
                    raise RuntimeError(f"{self.name} returned {len(outputs)} outputs for {len(items)} inputs")
            except asyncio.CancelledError:
                if first.future.cancelled():  # _settled cancelled the job's own batch
                    return
                for job, _ in parts:  # closing: nobody else will answer these callers
                    if not job.future.done():
                        job.future.set_exception(ServiceUnavailable(f"{self.name} is shutting down"))
                raise
            except Exception as exc:  # the call failed: fail every request in this batch
                for job, _ in parts:
                    if not job.future.done():
                        job.future.set_exception(exc)
                return
            # What the model computed: the batch's size × its longest input (padding).
            self._measured(len(items) * max(job.costs[i] for job, idx in parts for i in idx), self._clock() - started)
            # The model is free before its callers are answered: the worker, woken first, starts the
            # next batch while they render their answers (else the model idles through that).
            free()
            offset = 0
            for job, idx in parts:
                for k, i in enumerate(idx):
                    job.results[i] = outputs[offset + k]
                offset += len(idx)
                job.done += len(idx)
                if job.done == len(job.order) and not job.future.done():
                    job.future.set_result(job.results)
        finally:
            free()
