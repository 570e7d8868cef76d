"""``timeout_at`` and ``timeout`` as asyncio's, for the request path: one timer per tick, not per block.

asyncio's ``timeout_at`` starts a loop timer for every block; under uvloop a timer is a libuv
handle made, started, stopped and closed, a few microseconds, and the common request path enters
two such blocks (the served model's deadline, the upstream attempt's). Here the blocks of one
event loop share a wheel of ``TICK_S`` slots: entering a block puts it in the slot of its
deadline (a dict entry), leaving takes it out, and one timer, running only while some block is
in, wakes each tick and expires the blocks whose slot came due. A deadline is met at most a tick
and a millisecond late, never early: a slot comes due at the end of its tick.

What expiring does is asyncio's: the task is cancelled, and leaving the block turns that
cancellation, and only that one, into ``TimeoutError`` (a cancellation from elsewhere, or one of
an enclosing block, goes on as it is).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

TICK_S = 0.005
SETTLE_S = 0.001  # how long after a tick's end its timer is set to run


class Deadline:
    """One ``with`` (or ``async with``) block bounded in time (made by ``timeout_at`` / ``timeout``)."""

    __slots__ = ("when", "slot", "task", "cancelling", "expired", "wheel")

    def __init__(self, when: float, wheel: _Wheel) -> None:
        self.when = when
        self.wheel = wheel
        self.slot = 0
        self.task: asyncio.Task | None = None
        self.cancelling = 0
        self.expired = False

    def __enter__(self) -> Deadline:
        wheel = self.wheel
        task = asyncio.current_task(wheel.loop)  # the loop is known: no second look for the running one
        if task is None:
            raise RuntimeError("a deadline is for code running in a task")
        self.task = task
        self.cancelling = task.cancelling()
        wheel.add(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.expired:
            self.wheel.remove(self)
            return
        # asyncio's rule: this block's cancellation, and nothing else's, becomes TimeoutError
        if self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:  # type: ignore[union-attr]
            raise TimeoutError from exc

    # ``async with`` as asyncio's own blocks are written; entering and leaving never suspend, so the
    # request path uses the plain ``with`` and spares the two coroutines
    async def __aenter__(self) -> Deadline:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()  # type: ignore[union-attr]


class _Wheel:
    """The blocks of one event loop by the tick their deadline falls in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, dict[Deadline, None]] = {}
        self.done = 0  # every slot up to this one has been expired
        self.timer: asyncio.TimerHandle | None = None

    def add(self, deadline: Deadline) -> None:
        slot = math.ceil(deadline.when / TICK_S)  # due at the end of its tick: never early
        if self.timer is None:  # the wheel starts turning
            self.done = min(slot, int(self.loop.time() / TICK_S)) - 1
            self._arm()
        elif slot <= self.done:  # already past when the last tick turned: the next one
            slot = self.done + 1
        deadline.slot = slot
        blocks = self.slots.get(slot)
        if blocks is None:
            blocks = self.slots[slot] = {}
        blocks[deadline] = None

    def remove(self, deadline: Deadline) -> None:
        blocks = self.slots.get(deadline.slot)
        if blocks is not None:
            blocks.pop(deadline, None)
            if not blocks:
                del self.slots[deadline.slot]

    def _arm(self) -> None:
        # just past the next tick's end: uvloop's timers and clock go by whole milliseconds, and a
        # timer due on the very boundary may run while the clock still reads the tick before
        self.timer = self.loop.call_at((int(self.loop.time() / TICK_S) + 1) * TICK_S + SETTLE_S, self._tick)

    def _tick(self) -> None:
        self.timer = None
        now = int(self.loop.time() / TICK_S)  # the slots up to here are due
        slots = self.slots
        for slot in range(self.done + 1, now + 1) if now - self.done <= len(slots) else sorted(slots):
            if slot > now:
                break
            for deadline in slots.pop(slot, {}):
                deadline.expire()
        self.done = now
        if slots:
            self._arm()


_last: tuple[asyncio.AbstractEventLoop | None, _Wheel | None] = (None, None)


def _wheel() -> _Wheel:
    """The running loop's wheel (the last one used, else a new one)."""
    global _last
    loop = asyncio.get_running_loop()
    seen, wheel = _last
    if seen is not loop or wheel is None:
        wheel = _Wheel(loop)
        _last = (loop, wheel)
    return wheel


def timeout_at(when: float) -> Deadline:
    """A block that must end by the event loop's time ``when`` (else ``TimeoutError``)."""
    return Deadline(when, _wheel())


def timeout(delay: float) -> Deadline:
    """A block that must end within ``delay`` seconds (else ``TimeoutError``)."""
    wheel = _wheel()
    return Deadline(wheel.loop.time() + delay, wheel)
