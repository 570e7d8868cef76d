"""How many lines a replica keeps queued for the models at once: a window that grows while lines
are admitted and halves when admission refuses one (429, 503), as TCP's congestion window does.
The scheduler's admission bounds the queue in seconds of work; a bulk job that kept more queued
would be refused over and over, its lines retrying together. With the window the queue holds what
the bounds allow, and the model is never left idle between chunks."""

from __future__ import annotations

import asyncio

START, LOWEST, HIGHEST = 96.0, 32.0, 512.0  # LOWEST: a full batch of the in-process model waits


class AdmissionWindow:
    """A semaphore whose number of places follows ``size``: a line that leaves hands its place to
    one waiter (or gives it up while the window is smaller than the places out), and places the
    window gained are handed out as lines leave. Hundreds of a chunk's lines wait here, so each
    exit wakes only the waiters that get a place."""

    def __init__(self, start: float = START) -> None:
        self.size = start
        self.in_flight = 0
        self._places = int(start)  # held and free
        self._free = asyncio.Semaphore(self._places)

    async def __aenter__(self) -> AdmissionWindow:
        while True:
            await self._free.acquire()
            if self._places <= int(self.size):
                break
            self._places -= 1  # the window shrank: this free place goes
        self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        if self._places > int(self.size):  # the window shrank: this place goes
            self._places -= 1
        else:
            self._free.release()
        while self._places < int(self.size):  # it grew: new places
            self._places += 1
            self._free.release()

    def admitted(self) -> None:
        self.size = min(HIGHEST, self.size + 8.0 / max(1.0, self.size))

    def refused(self) -> None:
        self.size = max(LOWEST, self.size / 2)
