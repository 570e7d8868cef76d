"""``Slots``: a counting semaphore whose free case is one attribute test, not three coroutines.

The request path takes a slot twice per upstream call (the model's call slot, the connection
pool's) and finds one free almost always. ``asyncio.Semaphore`` pays for that case as for any
other: ``async with`` enters ``__aenter__``, which awaits ``acquire``, which asks ``locked``,
which walks its waiters. Here ``take_now`` takes a free slot synchronously, and only a caller
that finds none awaits ``take``. Waiters are served first come, first served: a slot given back
while someone waits goes to the oldest waiter directly, so a newcomer cannot overtake it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    __slots__ = ("free", "waiting")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("slots need a count of at least 1")
        self.free = count  # ``free`` and ``waiting`` are read, never written, from outside
        self.waiting: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        """No slot can be taken now (none free, or someone already waits for one)."""
        return self.free <= 0 or bool(self.waiting)

    def take_now(self) -> bool:
        """Take a free slot if nobody waits for one; whether it was taken."""
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting in line for one when none is free."""
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot, then cancelled before it ran: the slot goes on
            elif waiter in self.waiting:  # (``give`` drops a cancelled waiter it meets first)
                self.waiting.remove(waiter)
            raise

    def give(self) -> None:
        """Give a slot back: to the oldest waiter, else to the free count."""
        waiters = self.waiting
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
