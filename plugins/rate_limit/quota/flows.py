"""The quota in the request chain: what the rate-limit stages and the end of a request call.

``rate_limit`` asks for token counts when the caller's quota counts tokens (``wants_counts``);
``token_budget``, once they are known, charges the quota (``charge``); when the request ends,
``settle`` gives back what an unanswered request was charged, or records the usage of a key
without a quota. Anonymous callers have no quota and are not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.flow import Flow
    from plugins.rate_limit.quota.meter import QuotaMeter

TICKET = "quota_ticket"  # flow.meta: what the request was charged


def _key_name(flow: Flow) -> str | None:
    caller = flow.caller
    return None if caller is None or caller.anonymous else caller.name


def wants_counts(meter: QuotaMeter, flow: Flow) -> None:
    name = _key_name(flow)
    if name is not None:
        spec = meter.spec(flow.snapshot, name)
        if spec is not None and spec.counts_tokens:
            flow.needs_token_counts = True  # charged by token_budget, as counted for usage


async def charge(meter: QuotaMeter, flow: Flow) -> None:
    name = _key_name(flow)
    if name is None:
        return
    ticket = await meter.charge(flow.snapshot, name, flow.prompt_tokens or 0)
    if ticket is not None:
        flow.meta[TICKET] = ticket


def settle(meter: QuotaMeter, flow: Flow) -> None:
    """At the request's end: its usage as billed (the answer's tokens), or nothing without an answer."""
    name = _key_name(flow)
    if name is None or flow.model is None:
        return
    answered = flow.status == 200 and flow.outcome is not None
    tokens = flow.outcome.tokens if answered and flow.outcome is not None else None
    ticket = flow.meta.get(TICKET)
    if ticket is not None:
        meter.settle(ticket, tokens)
    elif tokens is not None:
        meter.record(name, tokens)
