"""What happens to an input over the model's token limit: one typed policy per case.

A request kind picks the policy for its request and route (``over_limit_policy``); the
``token_limit`` stage counts and hands the inputs over the limit to the policy, which refuses
them (``REFUSE``), cuts them at the end or the start (``CUT_END``, ``CUT_START``), reads each in
overlapping windows (``WINDOWS``, rerank documents) or lets them be (``NO_LIMIT``, tokenize).
The same policy first caps an input in characters (the limit × the tokenizer's longest token),
so no input costs more than its allowance to tokenize.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from core.requests.common import over_limit

if TYPE_CHECKING:
    from core.tokenization import TokenCounter


class Limited(Protocol):
    """What a policy needs of a request: its inputs cut in place, one at a time."""

    param: ClassVar[str]

    def truncate(self, i: int, counter: TokenCounter, limit: int) -> int: ...
    def truncate_start(self, i: int, counter: TokenCounter, limit: int) -> int: ...
    def split_long(self, counter: TokenCounter, limit: int, over: list[int]) -> tuple[list[int], list[int]]: ...


@dataclass(slots=True)
class Handled:
    """After a policy ran: the counts of what goes to the model, the inputs read only in part,
    and the inputs read in windows."""

    counts: list[int]
    cut: list[int]
    windowed: list[int]


RouterLimits = Callable[[list[int]], None]  # the ROUTER_* limits over counts (may cut in place)


class OverLimit:
    name: ClassVar[str]  # the routing.yaml value (``truncation:``) where one names it
    applies: ClassVar[bool] = True  # False: the model's limit does not apply at all

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        """``text`` capped to ``chars`` characters (or refused)."""
        raise NotImplementedError

    def handle(self, req: Limited, counter: TokenCounter, counts: list[int], over: list[int], limit: int,
               router_limits: RouterLimits) -> Handled:
        """Deal with the inputs in ``over`` (their counts are past ``limit``), then apply the
        ROUTER_* limits to what the model will read."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<over the limit: {self.name}>"


class Refuse(OverLimit):
    name = "error"

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        raise over_limit(param, i, f"{len(text)} characters", f"{chars} characters")

    def handle(self, req: Limited, counter: TokenCounter, counts: list[int], over: list[int], limit: int,
               router_limits: RouterLimits) -> Handled:
        if over:
            raise over_limit(req.param, over[0], f"{counts[over[0]]} tokens", f"{limit} tokens")
        router_limits(counts)
        return Handled(counts, [], [])


class CutEnd(OverLimit):
    name = "end"

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        return text[:chars]

    def _cut(self, req: Limited, i: int, counter: TokenCounter, limit: int) -> int:
        return req.truncate(i, counter, limit)

    def handle(self, req: Limited, counter: TokenCounter, counts: list[int], over: list[int], limit: int,
               router_limits: RouterLimits) -> Handled:
        for i in over:
            counts[i] = self._cut(req, i, counter, limit)
        router_limits(counts)
        return Handled(counts, list(over), [])


class CutStart(CutEnd):
    name = "start"

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        return text[-chars:]

    def _cut(self, req: Limited, i: int, counter: TokenCounter, limit: int) -> int:
        return req.truncate_start(i, counter, limit)


class Windows(OverLimit):
    """A long rerank document is read in overlapping windows and scores as its best one."""

    name = "chunk"

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        return text[:chars]

    def handle(self, req: Limited, counter: TokenCounter, counts: list[int], over: list[int], limit: int,
               router_limits: RouterLimits) -> Handled:
        router_limits(counts)  # the ROUTER_* limits see whole documents
        if not over:
            return Handled(counts, [], [])
        pairs, partly = req.split_long(counter, limit, over)  # usage: every pair scored
        return Handled(pairs, partly, list(over))


class NoLimit(OverLimit):
    """Reading everything (tokenize): the model's limit does not apply; the ROUTER_* limits do."""

    name = "none"
    applies = False

    def cut_text(self, text: str, chars: int, param: str, i: int) -> str:
        return text

    def handle(self, req: Limited, counter: TokenCounter, counts: list[int], over: list[int], limit: int,
               router_limits: RouterLimits) -> Handled:
        router_limits(counts)
        return Handled(counts, [], [])


REFUSE, CUT_END, CUT_START, WINDOWS, NO_LIMIT = Refuse(), CutEnd(), CutStart(), Windows(), NoLimit()
#: the policies a route's ``truncation:`` names
BY_NAME: dict[str, OverLimit] = {p.name: p for p in (REFUSE, CUT_END, CUT_START)}
