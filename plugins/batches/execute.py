"""One line of a job run as the synchronous request with the same body would be, with no HTTP
request: the chain's ``parse``, ``route`` and ``token_limit`` stages (whoever fills those slots)
over a flow holding the line's body and its owner's key, then the served model in the bulk lane
(``ModelCall(priority=BULK)``) as the key's tenant, and the path's codec rendering the answer.
So a line's vectors are the synchronous answer's, bit for bit; a model the key may not call, an
input over a limit, fail the line with the synchronous error.

Rate limits and token budgets per minute are for interactive traffic and are not charged here;
quotas are charged per chunk through ``charge_chunk``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from multidict import CIMultiDict

from core import ids
from core.errors import AuthError, GatewayError
from core.flow import Caller, Flow
from core.scheduling import BULK
from core.served import ModelCall

if TYPE_CHECKING:
    from core.running import RunningGateway
    from core.snapshot import Snapshot

STAGES = ("parse", "route", "token_limit")  # what a line runs of the chain before its model
BULK_DEADLINE_S = 3600.0  # a bulk call waits behind interactive work; it is not abandoned for that


async def charge_chunk(gw: RunningGateway, owner: str, tokens: int, lines: int) -> None:
    """Charge the key named ``owner`` for one chunk's work on a model (its prompt tokens, its lines
    as requests) through the gateway's meter (quotas: ``plugins.rate_limit.quota``), after the
    chunk ran: over quota, the ``QuotaExceeded`` raised here fails the chunk's lines with it (they
    go to the error file, uncharged) and later chunks likewise until the period resets."""
    meter, snapshot = gw.meter, gw.snapshot
    if meter is None or snapshot is None or owner == "anonymous":
        return
    if await meter.charge(snapshot, owner, tokens, lines) is None:
        meter.record(owner, tokens, lines)  # a key without a quota: counted for GET /v1/usage


def caller_of(snapshot: Snapshot, owner: str) -> Caller:
    """The key named ``owner`` as it stands in the current auth.yaml (its models may have changed
    since the job was made; a key that is gone fails the line)."""
    auth = snapshot.files.auth
    if owner == "anonymous" and auth.anonymous_allowed:
        return Caller(name="anonymous", anonymous=True, client_ip="bulk")
    key = auth.named(owner)
    if key is None:
        raise AuthError("The API key that made this job is no longer configured", code="invalid_api_key")
    return Caller(name=key.name, anonymous=False, client_ip="bulk", allowed_models=key.models)


class LineResult:
    __slots__ = ("body", "error", "inputs", "model", "request_id", "tokens")

    def __init__(self, request_id: str, body: Any = None, error: GatewayError | None = None,
                 model: str | None = None, tokens: int = 0, inputs: int = 0) -> None:
        self.request_id, self.body, self.error, self.model = request_id, body, error, model
        self.tokens, self.inputs = tokens, inputs


async def run_line(gw: RunningGateway, owner: str, url: str, body: Any) -> LineResult:
    """The answer to one line's body (or its error), as ``url`` would give it synchronously."""
    rid = ids.token()
    snapshot = gw.snapshot
    if snapshot is None:
        raise RuntimeError("no configuration is loaded")
    codec = gw.codecs.by_path[url]
    raw = orjson.dumps(body)

    async def read_body() -> bytes:
        return raw

    flow = Flow(kind=codec.kind, snapshot=snapshot, request_id=rid, client_ip="bulk", headers=CIMultiDict(),
                codec=codec, read_body=read_body)
    gw.registry.pin(snapshot)  # a reload meanwhile closes this snapshot's adapters only after the line
    try:
        flow.caller = caller_of(snapshot, owner)
        for name in STAGES:
            await gw.chain.find(name)(flow)
        model, request = flow.served(), flow.parsed()
        tenant = snapshot.tenants.of(None if flow.caller.anonymous else flow.caller.name)
        call = ModelCall(tenant=tenant, priority=BULK, request_id=rid, token_counts=flow.token_counts,
                         deadline=asyncio.get_running_loop().time() + max(BULK_DEADLINE_S, model.facts.timeout_s))
        outcome = await request.run(model, call, flow.prompt_tokens)
        answer = flow.codec.render(request, flow.wire, outcome) if flow.codec is not None else None
        tokens = int(outcome.tokens or 0)
        gw.metrics.usage(owner, model.alias, request.item_count, tokens)
        return LineResult(rid, answer, model=model.alias, tokens=tokens, inputs=request.item_count)
    except GatewayError as exc:
        return LineResult(rid, error=exc)
    finally:
        gw.registry.unpin(snapshot)
