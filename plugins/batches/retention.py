"""Retention: a file is deleted at its ``expires_at`` (``ROUTER_BATCH_RETENTION_HOURS`` after its
upload or its job's end); a final job's record and parts go with its retention too. A job not
done by its own ``expires_at`` (its ``completion_window``) is ended as ``expired`` by the runner."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from core.offload import off_loop
from plugins.batches.store import TERMINAL

if TYPE_CHECKING:
    from plugins.batches.files import FileStore
    from plugins.batches.store import JobStore

SWEEP_S = 60.0


async def sweep(files: FileStore, store: JobStore, retention_s: float, owners: list[str]) -> int:
    """Delete what is past retention; how many files and jobs went."""
    now = time.time()
    gone = 0
    for file_id in await off_loop(files.expired_files, now):
        await off_loop(files.delete, file_id)
        gone += 1
    for owner in owners:
        for job in await store.owned(owner):
            ended = max((job.get(k) or 0) for k in ("completed_at", "failed_at", "expired_at", "cancelled_at"))
            if job["status"] in TERMINAL and ended and ended + retention_s <= now:
                await store.remove(job["id"])
                await off_loop(shutil.rmtree, files.jobs / job["id"], True)
                gone += 1
    return gone
