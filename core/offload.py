"""Work that grows with a request's size (parsing a big body, tokenizing, windowing, rendering a
big answer) runs here, off the event loop, so health checks and other requests go on meanwhile.

The pool is bounded (``WORKERS`` threads shared by every request): hostile requests queue for
it rather than take more threads or the loop. A request waits for its work only until its
deadline (on the event loop's clock), then answers 504. Work of a request past its deadline that
has not started yet never starts (``STATS.dropped``): it would only hold a thread others wait for.
Work already running cannot be stopped: its thread finishes it and its result is dropped
(``STATS.overran``).

Every job is also noted (``STATS.jobs``, ``STATS.running``, ``STATS.last_done``): work this large
is what leaves memory behind, which ``core.memory`` hands back once the gateway is quiet.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.errors import DeadlineExceeded

T = TypeVar("T")

WORKERS = max(2, min(8, os.cpu_count() or 2))
INLINE_BYTES = 256 * 1024  # below this much input, working inline is cheaper than a thread hop
INLINE_VALUES = 100_000  # an answer of fewer values (floats, tokens, documents) is rendered inline
_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="maas-work")


@dataclass(slots=True)
class OffloadStats:
    jobs: int = 0  # started in all
    running: int = 0
    last_done: float = 0.0  # time.monotonic() when the last one ended
    dropped: int = 0  # never started: their request's deadline passed while they waited for a thread
    overran: int = 0  # still running when their request's deadline passed


STATS = OffloadStats()
_stats_lock = threading.Lock()


class _Job(Generic[T]):
    """``fn`` run in a thread unless abandoned first."""

    __slots__ = ("fn", "started", "abandoned", "lock")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.started = self.abandoned = False
        self.lock = threading.Lock()

    def __call__(self) -> T | None:
        with self.lock:
            if self.abandoned:
                return None  # nobody waits for it
            self.started = True
        with _stats_lock:
            STATS.jobs += 1
            STATS.running += 1
        try:
            return self.fn()
        finally:
            with _stats_lock:
                STATS.running -= 1
                STATS.last_done = time.monotonic()

    def abandon(self) -> None:
        """Its request stopped waiting: it never starts if it has not yet; counted either way."""
        with self.lock:
            self.abandoned = True
            started = self.started
        with _stats_lock:
            if started:
                STATS.overran += 1
            else:
                STATS.dropped += 1


def answer_size(outcome: object) -> int:
    """About how many values rendering ``outcome`` writes: vectors' floats, tokens' objects (×5
    fields), documents (their characters when they are sent back)."""
    vectors = getattr(outcome, "vectors", None)
    if vectors is not None:
        return int(vectors.size)
    by_input = getattr(outcome, "tokens_by_input", None)
    if by_input is not None:
        return 5 * sum(len(tokens) for tokens in by_input)
    documents = getattr(outcome, "documents", None)
    return sum(len(d) for d in documents) // 16 if documents else 0


async def off_loop(fn: Callable[..., T], *args: object, deadline: float | None = None) -> T:
    """``fn(*args)`` in the bounded pool; DeadlineExceeded (504) if ``deadline`` passes first."""
    job = _Job(functools.partial(fn, *args))
    future = asyncio.get_running_loop().run_in_executor(_pool, job)
    try:
        if deadline is None:
            return await future  # type: ignore[return-value]  # only an abandoned job returns None
        async with asyncio.timeout_at(deadline):
            return await future  # type: ignore[return-value]
    except TimeoutError:
        job.abandon()
        raise DeadlineExceeded("The request's work did not finish within its timeout "
                               "(the route's timeout, else ROUTER_REQUEST_TIMEOUT_SECONDS)") from None
    except asyncio.CancelledError:  # the client left
        job.abandon()
        raise
