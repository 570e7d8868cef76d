"""A fake model whose batches take exactly ``fixed + per_token × padded`` seconds on a clock of
its own: the scheduler times batches with ``clock``, so what it learns is exact and nothing sleeps."""

from __future__ import annotations

from typing import Any

from tests.support.gated import GatedModel


class TimedModel:
    """Items are ``(name, tokens)``; a batch's padded tokens are its size × its longest item. With
    ``gated`` each batch also waits for ``release()`` (the order of batches without timing)."""

    def __init__(self, fixed: float, per_token: float, *, gated: bool = False) -> None:
        self.fixed, self.per_token = fixed, per_token
        self.now = 0.0
        self.gate = GatedModel() if gated else None
        self.batches: list[list[Any]] = []

    def clock(self) -> float:
        return self.now

    def seconds(self, padded: float) -> float:
        return self.fixed + self.per_token * padded

    async def run(self, items: list[Any], own: bool) -> list[Any]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.run(items, own)
        self.now += self.seconds(len(items) * max(tokens for _, tokens in items))
        return list(items)

    def release(self, n: int = 1) -> None:
        assert self.gate is not None
        self.gate.release(n)

    async def started(self, n: int) -> None:
        assert self.gate is not None
        await self.gate.started(n)


def inputs(tag: str, n: int, tokens: int) -> list[tuple[str, int]]:
    return [(f"{tag}{i}", tokens) for i in range(n)]
