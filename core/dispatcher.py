"""The request chain: one explicit, ordered list of stages over one Flow.

Built-in order: auth → rate_limit → parse → token_limit → route → adapter. Plugins fill these slots
or insert extra stages next to them; the resulting order is logged at startup and exposed
as ``Chain.names``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from core.errors import ConfigError
from core.flow import Flow

SLOTS: tuple[str, ...] = ("auth", "rate_limit", "parse", "token_limit", "route", "adapter")


class Stage(Protocol):
    name: str

    def __call__(self, flow: Flow) -> Awaitable[None]: ...


class ChainBuilder:
    def __init__(self) -> None:
        self._slots: dict[str, Stage] = {}
        self._extra: list[tuple[Stage, str | None, str | None]] = []

    def register(self, stage: Stage, *, before: str | None = None, after: str | None = None) -> None:
        if before is None and after is None:
            if stage.name not in SLOTS:
                raise ConfigError(f"stage {stage.name!r} is not a built-in slot; pass before= or after=")
            self._slots[stage.name] = stage  # a later registration (third-party) overrides a built-in
        else:
            self._extra.append((stage, before, after))

    def build(self) -> "Chain":
        missing = [s for s in SLOTS if s not in self._slots]
        if missing:
            raise ConfigError(f"no stage registered for slot(s): {', '.join(missing)}")
        stages: list[Stage] = [self._slots[s] for s in SLOTS]
        for stage, before, after in self._extra:
            anchor = before or after
            names = [s.name for s in stages]
            if anchor not in names:
                raise ConfigError(f"stage {stage.name!r} refers to unknown stage {anchor!r}")
            index = names.index(anchor) + (0 if before else 1)
            stages.insert(index, stage)
        return Chain(stages)


class Chain:
    def __init__(self, stages: list[Stage]) -> None:
        self.stages = tuple(stages)
        self.names = tuple(s.name for s in stages)

    async def run(self, flow: Flow) -> None:
        for stage in self.stages:
            flow.stages_run.append(stage.name)
            await stage(flow)
            if flow.response is not None:
                return


StageFn = Callable[[Flow], Awaitable[None]]


class FunctionStage:
    """Wrap a plain coroutine function as a named stage."""

    def __init__(self, name: str, fn: StageFn) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, flow: Flow) -> Awaitable[None]:
        return self._fn(flow)
