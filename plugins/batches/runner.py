"""Running jobs: each replica's workers take chunks of active jobs, embed them, checkpoint them,
and finalize jobs whose chunks are all done (or that were cancelled or expired).

A worker claims one chunk at a time (``JobStore.claim``; a lease in Redis), renews the claim while
it runs, charges and writes the chunk only while it still holds the claim, and marks it done before
letting the claim go, so a chunk runs twice only when a lapsed lease was taken over. It watches the
job meanwhile: a cancel stops the chunk within ``WATCH_S`` and keeps what earlier chunks did. A
chunk's lines go to the served model together (ordered by length), so the scheduler forms full,
length-grouped batches across lines in the bulk lane. Lines of one model and parameters run as one
request of a few texts (``execute.merge_groups``, ``run_merged``): the chain's and the scheduler's
work per request is paid once for them, and each line's answer is still its synchronous one.
Refusals that say "later" (429, 503) are retried; a stopping replica abandons its chunk for another
to redo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import orjson

import plugins.batches.jobs as job_files
from core import ids
from core.errors import GatewayError, RateLimited, ServiceUnavailable
from core.offload import off_loop
from plugins.batches.execute import LineResult, charge_chunk, merge_groups, run_merged
from plugins.batches.retention import SWEEP_S, sweep
from plugins.batches.settings import NotFound
from plugins.batches.store import FINAL, TERMINAL, Job
from plugins.batches.window import AdmissionWindow

if TYPE_CHECKING:
    from core.running import RunningGateway
    from plugins.batches.files import FileStore
    from plugins.batches.metrics import BatchMetrics
    from plugins.batches.settings import BatchSettings
    from plugins.batches.store import JobStore

log = logging.getLogger("maas.batches")
POLL_S = 0.5  # how often an idle worker looks for work
WATCH_S = 0.25  # how often a running chunk checks for a cancel and renews its claim
WORKERS = 2  # chunks one replica runs at once: the next is queued while one is written


class Abandoned(Exception):
    """The chunk stops unwritten: its job was cancelled, its claim lost, or the replica stops."""


class JobRunner:
    def __init__(self, gw: RunningGateway, files: FileStore, store: JobStore, settings: BatchSettings,
                 metrics: BatchMetrics) -> None:
        self.gw, self.files, self.store, self.settings, self.metrics = gw, files, store, settings, metrics
        self.base = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self.window = AdmissionWindow()  # lines this replica keeps queued for the models
        self._tasks: list[asyncio.Task] = []
        self.stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(f"{self.base}/{i}"), name=f"batch-worker-{i}")
                       for i in range(WORKERS)]

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def created(self, job: Job) -> None:
        self._wake.set()

    async def cancel(self, batch_id: str) -> Job:
        def change(job: Job) -> Job | None:
            if job["status"] in TERMINAL or job["status"] == "cancelling":
                return None
            return {**job, "status": "cancelling", "cancelling_at": int(time.time())}

        job = await self.store.update(batch_id, change)
        self._wake.set()
        if job is None:
            raise NotFound(f"No batch with id '{batch_id}'", param="batch_id")
        return job

    # -- the loop ------------------------------------------------------------------------------
    async def _loop(self, holder: str) -> None:
        next_sweep = 0.0
        while not self.stopping:
            try:
                if holder.endswith("/0") and time.monotonic() >= next_sweep and self.gw.snapshot is not None:
                    next_sweep = time.monotonic() + SWEEP_S
                    owners = [k.name for k in self.gw.snapshot.files.auth.keys] + ["anonymous"]
                    await sweep(self.files, self.store, self.settings.retention_hours * 3600, owners)
                worked = await self._step(holder)
            except Exception:
                log.exception("bulk-job worker failed; retrying")
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _step(self, holder: str) -> bool:
        if self.gw.snapshot is None:
            return False
        states: dict[str, int] = {}
        worked = False
        for batch_id in await self.store.active():
            job = await self.store.get(batch_id)
            if job is None:
                continue
            states[job["status"]] = states.get(job["status"], 0) + 1
            if worked:
                continue
            worked = await self._advance(job, holder)
        self.metrics.states(states)
        return worked

    async def _advance(self, job: Job, holder: str) -> bool:
        status, now = job["status"], time.time()
        if status == "cancelling":
            return await self._finish(job, holder, "cancelled")
        if now >= job["expires_at"]:
            return await self._finish(job, holder, "expired")
        if status == "validating":
            job = await self._start(job)
        if not self.files.data_path(job["input_file_id"]).exists():
            return await self._finish(job, holder, "failed", "input_file_missing",
                                      "The input file was deleted before the job finished")
        results = await self.store.results(job["id"])
        pending = [k for k in range(len(job["chunks"])) if k not in results]
        if not pending:
            return await self._finish(job, holder, "completed")
        for k in pending:
            if await self.store.claim(job["id"], k, holder, self.settings.lease_s):
                try:
                    # Its holder marks a chunk done before it lets the claim go: one done between
                    # the read above and this claim is seen here, and is not run a second time.
                    if await self.store.is_done(job["id"], k):
                        continue
                    await self._run_chunk(job, k, holder)
                finally:
                    await self.store.release(job["id"], k, holder)
                return True
        return False

    async def _start(self, job: Job) -> Job:
        def change(j: Job) -> Job | None:
            return {**j, "status": "in_progress", "in_progress_at": int(time.time())} \
                if j["status"] == "validating" else None

        started = await self.store.update(job["id"], change)
        if started is not None and started.get("in_progress_at") and job["status"] == "validating":
            self.metrics.queue_seconds.observe(max(0.0, time.time() - job["created_at"]))
        return started or job

    # -- one chunk -----------------------------------------------------------------------------
    async def _run_chunk(self, job: Job, k: int, holder: str) -> None:
        began = time.perf_counter()
        offset, count = job["chunks"][k]
        lines = await off_loop(job_files.read_chunk, self.files.data_path(job["input_file_id"]), offset, count)
        work = asyncio.create_task(self._embed(job, lines))
        watch = asyncio.create_task(self._watch(job["id"], k, holder, work))
        try:
            parsed, results = await work
        except (asyncio.CancelledError, Abandoned):
            if self.stopping or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return  # cancelled or claim lost: nothing of this chunk is written
        finally:
            watch.cancel()
        if not await self.store.renew(job["id"], k, holder, self.settings.lease_s):
            return  # the claim was taken over: the taker's lines are the chunk's (charged and written once)
        output, errors, failed = await self._settle(job, parsed, results)
        folder = self.files.jobs / job["id"]
        run = ids.token()[:8]  # this run's parts: another run of the chunk writes its own
        await off_loop(job_files.write_parts, folder, k, output, errors, run)
        if not await self.store.chunk_done(job["id"], k, len(output), failed, run):
            await off_loop(job_files.drop_parts, folder, k, run)  # another run was recorded first: its lines stand
            return
        self.metrics.lines.labels(result="completed").inc(len(output))
        self.metrics.lines.labels(result="failed").inc(failed)
        self.metrics.chunk_seconds.observe(time.perf_counter() - began)
        log.debug("bulk chunk done", extra={"batch": job["id"], "chunk": k, "failed": failed})

    async def _watch(self, batch_id: str, k: int, holder: str, work: asyncio.Task) -> None:
        while not work.done():
            await asyncio.sleep(WATCH_S)
            job = await self.store.get(batch_id)
            kept = await self.store.renew(batch_id, k, holder, self.settings.lease_s)
            if job is None or job["status"] in ("cancelling", *TERMINAL) or not kept:
                work.cancel()
                return

    async def _embed(self, job: Job, lines: list[tuple[int, bytes]]) -> tuple[list[dict[str, Any]], list[LineResult]]:
        parsed = [orjson.loads(raw) for _, raw in lines]
        order = sorted(range(len(parsed)), key=lambda i: len(lines[i][1]))  # similar lengths queue together
        groups = merge_groups(self.gw, parsed, order)

        async def one(group: list[int]) -> list[LineResult]:
            return await self._lines(job, [parsed[i] for i in group])

        tasks = [asyncio.create_task(one(group)) for group in groups]
        results: list[LineResult] = [None] * len(parsed)  # type: ignore[list-item] # each set below
        try:
            for group, task in zip(groups, tasks, strict=True):
                for i, result in zip(group, await task, strict=True):
                    results[i] = result
        finally:
            for task in tasks:
                task.cancel()
        return parsed, results

    async def _settle(self, job: Job, parsed: list[dict[str, Any]],
                      results: list[LineResult]) -> tuple[list[bytes], list[bytes], int]:
        """The chunk's lines charged to the job's owner, and its output and error lines."""
        done = [r for r in results if r.error is None]
        try:
            if done:
                await charge_chunk(self.gw, job["owner"], sum(r.tokens for r in done), len(done))
        except GatewayError as exc:  # over quota: the chunk's lines carry the quota's error
            results = [LineResult(r.request_id, error=exc) for r in results]
        output, errors = [], []
        for line, r in zip(parsed, results, strict=True):
            if r.error is None:
                output.append(job_files.line_record(line["custom_id"], r.request_id, 200, r.body))
                self.metrics.inputs.inc(r.inputs)
            else:
                body = self.gw.codecs.error_body(line["url"], r.error)
                errors.append(job_files.line_record(line["custom_id"], r.request_id, r.error.status, body))
        return output, errors, len(errors)

    async def _lines(self, job: Job, group: list[dict[str, Any]]) -> list[LineResult]:
        """A group of lines (``_groups``); refusals that say "later" (admission's 429 and 503) are
        waited out, and only the lines refused are sent again."""
        results: list[LineResult] = [None] * len(group)  # type: ignore[list-item] # each set below
        pending = list(range(len(group)))
        while True:
            async with self.window:
                got = await run_merged(self.gw, job["owner"], group[0]["url"], [group[k]["body"] for k in pending])
            later, retry_after = [], 1.0
            for k, result in zip(pending, got, strict=True):
                if isinstance(result.error, (RateLimited, ServiceUnavailable)):
                    later.append(k)
                    retry_after = getattr(result.error, "retry_after", 1.0)
                else:
                    results[k] = result
            if not later:
                self.window.admitted()
                return results
            self.window.refused()
            if self.stopping:
                raise Abandoned
            log.debug("bulk lines refused for now; retrying", extra={"batch": job["id"], "lines": len(later),
                                                                      "window": self.window.size})
            await asyncio.sleep(min(1.0, max(0.05, retry_after)))
            pending = later

    # -- the end of a job ----------------------------------------------------------------------
    async def _finish(self, job: Job, holder: str, status: str, code: str | None = None,
                      message: str | None = None) -> bool:
        batch_id = job["id"]
        if not await self.store.claim(batch_id, FINAL, holder, self.settings.lease_s):
            return False
        try:
            if status in ("cancelled", "expired"):
                deadline = time.monotonic() + self.settings.lease_s
                while await self.store.claimed(batch_id) and time.monotonic() < deadline:
                    await asyncio.sleep(WATCH_S)  # the others stop their chunks (within WATCH_S)
            if status == "completed":
                await self.store.update(batch_id, lambda j: {**j, "status": "finalizing",
                                                             "finalizing_at": int(time.time())})
            results = await self.store.results(batch_id)
            ids = await off_loop(job_files.finish_files, self.files, job, results, status)
            stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at",
                     "failed": "failed_at"}[status]
            errors = {"object": "list", "data": [{"code": code, "message": message, "param": None, "line": None}]} \
                if code is not None else None

            def change(j: Job) -> Job | None:
                if j["status"] in TERMINAL:
                    return None
                return {**j, **ids, "status": status, stamp: int(time.time()),
                        "errors": errors or j.get("errors")}

            await self.store.update(batch_id, change)
            self.metrics.finished.labels(state=status).inc()
            log.info("bulk job finished", extra={"batch": batch_id, "status": status, "owner": job["owner"]})
        finally:
            await self.store.release(batch_id, FINAL, holder)
        return True
