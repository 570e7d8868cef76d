"""How many lines a replica keeps queued for the models at once: a window that grows while lines
are admitted and halves when admission refuses one (429, 503), as TCP's congestion window does.
The scheduler's admission bounds the queue in seconds of work; a bulk job that kept more queued
would be refused over and over, its lines retrying together. With the window the queue holds what
the bounds allow, and the model is never left idle between chunks."""

from __future__ import annotations

import asyncio

START, LOWEST, HIGHEST = 96.0, 32.0, 512.0  # LOWEST: a full batch of the in-process model waits


class AdmissionWindow:
    def __init__(self, start: float = START) -> None:
        self.size = start
        self.in_flight = 0
        self._room = asyncio.Condition()

    async def __aenter__(self) -> AdmissionWindow:
        async with self._room:
            await self._room.wait_for(lambda: self.in_flight < int(self.size))
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._room:
            self.in_flight -= 1
            self._room.notify_all()

    def admitted(self) -> None:
        self.size = min(HIGHEST, self.size + 8.0 / max(1.0, self.size))

    def refused(self) -> None:
        self.size = max(LOWEST, self.size / 2)
