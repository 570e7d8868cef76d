"""The long-lived heap kept out of the cyclic garbage collector's way.

The router holds about half a million objects that live as long as the process: modules and
classes, the in-process models and their tokenizers, the config snapshot. Python's collector
walks every one of them in each full (generation 2) collection: about 0.3 s on two cores with the
embedded default's models, during which the event loop stops and, the collector holding the GIL,
so does an in-process model. Under steady load a full collection comes every few seconds, so a
one-sentence request now and then waited 0.3 s for nothing (a bulk job's neighbours saw p99 go
from 20 ms to over 300 ms, and the model idled through each pause).

``HeapFreeze`` moves what is tracked once the first config has loaded (its models with it) into
the permanent generation (``gc.freeze()``, after one full collection so no garbage is kept),
which collections skip: later full collections walk only what was allocated since. A reload
unfreezes the heap, so what the old snapshot leaves behind in reference cycles is collected by
the next full collection the interpreter runs on its own; the heap is frozen again after it
(after a cheap collection of the young generations, so a request's garbage is not frozen too).
Only ``maas serve`` uses it (``core.cli``): a test process building many apps keeps its collector
as it is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, Protocol

from core.looptask import LoopTask

log = logging.getLogger("maas.heap")


class _Serving(Protocol):
    @property
    def snapshot(self) -> Any: ...


def full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


class HeapFreeze(LoopTask):
    task_name = "heap-freeze"

    def __init__(self, gateway: _Serving, *, interval_s: float = 1.0) -> None:
        self._gateway = gateway
        self.interval_s = interval_s
        self._seen: Any = None  # the snapshot the heap was last settled for
        self._unfrozen_at: int | None = None  # full collections counted when a reload unfroze the heap

    def step(self) -> str | None:
        """What this look did: "frozen", "unfrozen" or None."""
        snapshot = self._gateway.snapshot
        if snapshot is not None and snapshot is not self._seen:
            first, self._seen = self._seen is None, snapshot
            if first:
                gc.collect()
                return self._freeze()
            gc.unfreeze()
            self._unfrozen_at = full_collections()
            return "unfrozen"
        if self._unfrozen_at is not None and full_collections() > self._unfrozen_at:
            gc.collect(1)  # the young garbage since that collection (cheap): not frozen with the rest
            return self._freeze()
        return None

    def _freeze(self) -> str:
        gc.freeze()
        self._unfrozen_at = None
        log.info("long-lived objects moved out of the garbage collector's way",
                 extra={"objects": gc.get_freeze_count()})
        return "frozen"

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.step()
