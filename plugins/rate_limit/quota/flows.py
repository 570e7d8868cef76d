"""The quota in the request chain: what the rate-limit stages and the end of a request call.

``rate_limit`` asks for token counts when the caller's quota counts tokens (``wants_counts``);
``token_budget``, once they are known, charges the quota (``charge``); when the request ends,
``settle`` gives back what an unanswered request was charged, or records the usage of a key
without a quota. Anonymous callers have no quota and are not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from core.flow import Flow
    from plugins.rate_limit.quota.meter import QuotaMeter

TICKET = "quota_ticket"  # flow.meta: what the request was charged
SPEC = "quota_spec"  # flow.meta: the caller's quota (None: a key without one), looked up once per request


def wants_counts(meter: QuotaMeter, flow: Flow) -> None:
    caller = flow.caller
    if caller is None or caller.anonymous:
        return
    spec = flow.meta[SPEC] = meter.spec(flow.snapshot, caller.name)
    if spec is not None and spec.counts_tokens:
        flow.needs_token_counts = True  # charged by token_budget, as counted for usage


def charge(meter: QuotaMeter, flow: Flow) -> Awaitable[None] | None:
    """Charge the caller's quota (to await), or None when the caller has none."""
    caller = flow.caller
    if caller is None or caller.anonymous or (SPEC in flow.meta and flow.meta[SPEC] is None):
        return None
    return _charged(meter, flow, caller.name)


async def _charged(meter: QuotaMeter, flow: Flow, name: str) -> None:
    ticket = await meter.charge(flow.snapshot, name, flow.prompt_tokens or 0)
    if ticket is not None:
        flow.meta[TICKET] = ticket


def settle(meter: QuotaMeter, flow: Flow) -> None:
    """At the request's end: its usage as billed (the answer's tokens), or nothing without an answer."""
    caller, outcome = flow.caller, flow.outcome
    if caller is None or caller.anonymous or flow.model is None:
        return
    tokens = outcome.tokens if outcome is not None and flow.status == 200 else None
    ticket = flow.meta.get(TICKET)
    if ticket is not None:
        meter.settle(ticket, tokens)
    elif tokens is not None:
        meter.record(caller.name, tokens)
