"""Work that grows with a request's size (parsing a big body, tokenizing, windowing, rendering a
big answer) runs here, off the event loop, so health checks and other requests go on meanwhile.

The pool is bounded (``WORKERS`` threads shared by every request): hostile requests queue for
it rather than take more threads or the loop. A request waits for its work only until its
deadline (on the event loop's clock), then answers 504; the thread finishes what it started and
its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from core.errors import DeadlineExceeded

T = TypeVar("T")

WORKERS = max(2, min(8, os.cpu_count() or 2))
INLINE_BYTES = 256 * 1024  # below this much input, working inline is cheaper than a thread hop
INLINE_VALUES = 100_000  # an answer of fewer values (floats, tokens, documents) is rendered inline
_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="maas-work")


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
    future = asyncio.get_running_loop().run_in_executor(_pool, functools.partial(fn, *args))
    if deadline is None:
        return await future
    try:
        async with asyncio.timeout_at(deadline):
            return await future
    except TimeoutError:
        raise DeadlineExceeded("The request's work did not finish within its timeout "
                               "(the route's timeout, else ROUTER_REQUEST_TIMEOUT_SECONDS)") from None
