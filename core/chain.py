"""The request chain: one explicit, ordered list of stages over one Flow.

Built-in order: auth → rate_limit → parse → route → token_limit → token_budget → adapter. The
model is chosen before anything is counted, so a request the route stage refuses (404, 403)
costs no tokenization and no token budget.

Precedence, by origin rather than registration order (pluggy's is last-registered-first):

* a built-in plugin (``core.plugins.DEFAULT_PLUGINS``) fills a slot;
* a third-party stage with a slot's name replaces the built-in one, whichever registered first;
* two third-party plugins claiming one slot (or one extra stage name) is a startup error naming both;
* ``register(stage, before="route")`` / ``after=`` inserts an extra stage next to a named one;
* ``auth`` and the stages registered with ``every_request=True`` also run for requests that call
  no model (``/v1/models``), which skip the rest (no body, no rate-limit charge).

The resulting order is logged at startup and exposed as ``Chain.names``.

A stage is called with the flow and returns an awaitable (an ``async def __call__`` returns its
coroutine), which the chain awaits. A stage that settles the flow without waiting (auth, route,
the common token-limit and rate-limit cases) returns ``SETTLED``, which the chain does not
await, and costs no coroutine; code that awaits a stage itself may await ``SETTLED`` as any
other awaitable. A plain function that returns None is taken as settled too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Protocol

from core.errors import ConfigError
from core.flow import Flow


class _Settled:
    """``SETTLED``: the flow is settled, nothing to wait for (awaiting it ends at once)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator: awaiting ``SETTLED`` ends at once


SETTLED: Awaitable[None] = _Settled()
SLOTS: tuple[str, ...] = ("auth", "rate_limit", "parse", "route", "token_limit", "token_budget", "adapter")
EVERY_REQUEST_SLOTS = frozenset({"auth"})  # slots that run for every request, /v1/models included


class Stage(Protocol):
    name: str

    def __call__(self, flow: Flow) -> Awaitable[None] | None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    stage: Stage
    origin: str  # the plugin's registered name
    builtin: bool
    before: str | None = None
    after: str | None = None
    every_request: bool = False


Register = Callable[..., None]


class ChainBuilder:
    def __init__(self) -> None:
        self._slots: dict[str, Claim] = {}
        self._extra: dict[str, Claim] = {}

    def registrar(self, origin: str, *, builtin: bool) -> Register:
        """The ``register`` callback one plugin's ``register_stages`` receives."""

        def register(stage: Stage, *, before: str | None = None, after: str | None = None,
                     every_request: bool = False) -> None:
            self.claim(Claim(stage, origin, builtin, before, after, every_request))

        return register

    def claim(self, claim: Claim) -> None:
        name = claim.stage.name
        if claim.before is not None and claim.after is not None:
            raise ConfigError(f"stage {name!r} from {claim.origin}: pass before= or after=, not both")
        if claim.before is None and claim.after is None:
            if name not in SLOTS:
                raise ConfigError(f"stage {name!r} from {claim.origin} is not a built-in slot "
                                  f"({', '.join(SLOTS)}); pass before= or after=")
            table = self._slots
        else:
            if name in SLOTS:
                raise ConfigError(f"stage {name!r} from {claim.origin} has a slot's name; register it "
                                  "without before=/after= to replace the built-in")
            table = self._extra
        held = table.get(name)
        if held is not None:
            if held.builtin == claim.builtin:  # two plugins of one standing: no rule can pick
                raise ConfigError(f"stage {name!r} is registered by both {held.origin} and {claim.origin}; "
                                  "block one with ROUTER_DISABLED_PLUGINS")
            if claim.builtin:  # the third-party stage already there wins
                return
        table[name] = claim

    def build(self) -> Chain:
        missing = [s for s in SLOTS if s not in self._slots]
        if missing:
            raise ConfigError(f"no stage registered for slot(s): {', '.join(missing)}")
        claims = [self._slots[s] for s in SLOTS]
        pending = list(self._extra.values())
        while pending:  # an extra stage may anchor on another extra stage
            names = [c.stage.name for c in claims]
            placed = [c for c in pending if (c.before or c.after) in names]
            if not placed:
                c = pending[0]
                raise ConfigError(f"stage {c.stage.name!r} from {c.origin} refers to unknown stage "
                                  f"{c.before or c.after!r}")
            for c in placed:
                names = [x.stage.name for x in claims]
                index = names.index(c.before or c.after) + (0 if c.before else 1)  # type: ignore[arg-type]
                claims.insert(index, c)
                pending.remove(c)
        common = [c.stage.name for c in claims if c.every_request or c.stage.name in EVERY_REQUEST_SLOTS]
        return Chain([c.stage for c in claims], [c.origin for c in claims], common)


class Chain:
    def __init__(self, stages: list[Stage], origins: list[str] | None = None,
                 every_request: list[str] | None = None) -> None:
        self.stages = tuple(stages)
        self.names = tuple(s.name for s in stages)
        self.origins = tuple(origins or ["?"] * len(stages))
        wanted = set(every_request if every_request is not None else EVERY_REQUEST_SLOTS)
        #: the stages every request runs, those of model calls or not (``/v1/models``), in chain order
        self.common = tuple(s for s in self.stages if s.name in wanted)

    def describe(self) -> str:
        """``auth (plugins.auth) → …``: the startup log line."""
        return " → ".join(f"{n} ({o})" for n, o in zip(self.names, self.origins, strict=True))

    def find(self, name: str) -> Stage:
        return self.stages[self.names.index(name)]

    async def run(self, flow: Flow, *, common_only: bool = False) -> None:
        """Run the stages over ``flow`` until one sets ``flow.response``; ``common_only``: only
        the stages that apply to every request (a request that calls no model)."""
        for stage in self.common if common_only else self.stages:
            flow.stages_run.append(stage.name)
            waiting = stage(flow)
            if waiting is not SETTLED and waiting is not None:
                await waiting
            if flow.response is not None:
                return


StageFn = Callable[[Flow], Awaitable[None] | None]


class FunctionStage:
    """Wrap a plain coroutine function as a named stage."""

    def __init__(self, name: str, fn: StageFn) -> None:
        self.name = name
        self._fn = fn

    def __call__(self, flow: Flow) -> Awaitable[None] | None:
        return self._fn(flow)
