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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from multidict import CIMultiDict

from core import ids
from core.dialects.openai import OpenAIEmbeddings
from core.errors import AuthError, GatewayError
from core.flow import Caller, Flow
from core.requests import EmbeddingsOutcome, EmbeddingsRequest
from core.scheduling import BULK
from core.served import ModelCall

if TYPE_CHECKING:
    from core.running import RunningGateway
    from core.snapshot import Snapshot

STAGES = ("parse", "route", "token_limit")  # what a line runs of the chain before its model
BULK_DEADLINE_S = 3600.0  # a bulk call waits behind interactive work; it is not abandoned for that
MERGE_INPUTS = 32  # texts of lines of one model and parameters sent as one request (a batch's worth)


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
    gw.registry.pin(snapshot)  # a reload meanwhile closes this snapshot's adapters only after the line
    try:
        flow = await _through_stages(gw, snapshot, owner, url, body, rid)
        model, request = flow.served(), flow.parsed()
        outcome = await request.run(model, _bulk_call(flow, rid), flow.prompt_tokens)
        answer = flow.codec.render(request, flow.wire, outcome) if flow.codec is not None else None
        tokens = int(outcome.tokens or 0)
        gw.metrics.usage(owner, model.alias, request.item_count, tokens)
        return LineResult(rid, answer, model=model.alias, tokens=tokens, inputs=request.item_count)
    except GatewayError as exc:
        return LineResult(rid, error=exc)
    finally:
        gw.registry.unpin(snapshot)


def merge_key(gw: RunningGateway, url: str, body: Any) -> bytes | None:
    """Lines with one key may run as one request (``run_merged``): bodies of an OpenAI-shaped
    embeddings path whose ``input`` is text (a string, or strings) and whose other fields are the
    same, for a model whose texts the scheduler batches with other requests' anyway (so merging
    changes no batch a vector is computed in) and whose tokens the router counts itself (so each
    line's usage is what it would be alone, not an upstream's count of the whole). None for any
    other line: it runs alone."""
    codec = gw.codecs.by_path.get(url)
    if not isinstance(codec, OpenAIEmbeddings) or not isinstance(body, dict):
        return None
    texts = body.get("input")
    if not (isinstance(texts, str) or (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts))):
        return None
    snapshot = gw.snapshot
    model = snapshot.models.get(body.get("model")) if snapshot is not None else None  # type: ignore[arg-type]
    if model is None or model.reports_usage or not model.feed.batching.split:
        return None
    rest = {k: v for k, v in body.items() if k != "input"}
    return url.encode() + b" " + orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)


def merge_groups(gw: RunningGateway, lines: list[dict[str, Any]], order: list[int]) -> list[list[int]]:
    """The lines (their indices, taken in ``order``) that run as one request: those of one
    ``merge_key``, up to ``MERGE_INPUTS`` texts together; any other line alone."""
    groups: list[list[int]] = []
    open_: dict[bytes, tuple[list[int], int]] = {}
    for i in order:
        line = lines[i]
        key = merge_key(gw, line["url"], line["body"])
        if key is None:
            groups.append([i])
            continue
        n = len(inputs_of(line["body"]))
        members, held = open_.get(key, ([], 0))
        if members and held + n > MERGE_INPUTS:
            members, held = [], 0
        if not members:
            groups.append(members)
        members.append(i)
        open_[key] = (members, held + n)
    return groups


def inputs_of(body: dict[str, Any]) -> list[str]:
    """A mergeable line's texts (``merge_key``)."""
    texts = body["input"]
    return [texts] if isinstance(texts, str) else texts


async def run_merged(gw: RunningGateway, owner: str, url: str, bodies: list[dict[str, Any]]) -> list[LineResult]:
    """Lines of one ``merge_key`` as one request: their texts in one body, through the stages and
    the model once, the answer cut back into each line's (its vectors, its tokens), rendered as its
    synchronous answer would be. The chain's and the scheduler's work per request is paid once for
    them all; the model's batches are formed as before, each text padded to its own length.

    Refused, in the stages or by the model (a text over a limit, the whole over the request's
    limit or over a queue bound), or with no count of each text's tokens to cut the usage by, each
    line runs alone (``_alone``) for its own answer or refusal."""
    if len(bodies) == 1:
        return [await run_line(gw, owner, url, bodies[0])]
    parts = [inputs_of(b) for b in bodies]
    rid = ids.token()
    snapshot = gw.snapshot
    if snapshot is None:
        raise RuntimeError("no configuration is loaded")
    gw.registry.pin(snapshot)
    try:
        flow = await _through_stages(gw, snapshot, owner, url,
                                     {**bodies[0], "input": [t for part in parts for t in part]}, rid)
        request, counts = flow.request, flow.token_counts
        if not isinstance(request, EmbeddingsRequest) or counts is None \
                or not len(counts) == len(request.inputs) == sum(len(p) for p in parts):
            return await _alone(gw, owner, url, bodies)
        model = flow.served()
        outcome = await request.run(model, _bulk_call(flow, rid), flow.prompt_tokens)
    except GatewayError:
        return await _alone(gw, owner, url, bodies)
    finally:
        gw.registry.unpin(snapshot)
    results, start = [], 0
    for part in parts:
        end = start + len(part)
        tokens = sum(counts[start:end])
        mine = EmbeddingsOutcome(outcome.model, outcome.vectors[start:end], tokens, spaces=outcome.spaces)
        line_request = replace(request, inputs=request.inputs[start:end])
        answer = flow.codec.render(line_request, flow.wire, mine) if flow.codec is not None else None
        gw.metrics.usage(owner, model.alias, len(part), tokens)
        results.append(LineResult(rid, answer, model=model.alias, tokens=tokens, inputs=len(part)))
        start = end
    return results


async def _alone(gw: RunningGateway, owner: str, url: str, bodies: list[dict[str, Any]]) -> list[LineResult]:
    """Each line as its own request, all at once: a refused group's lines (a text over a limit, the
    whole over the request's limit, a queue bound its size passed) get their own answers."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run_line(gw, owner, url, body)) for body in bodies]
    return [task.result() for task in tasks]


async def _through_stages(gw: RunningGateway, snapshot: Snapshot, owner: str, url: str, body: Any,
                          rid: str) -> Flow:
    """A flow of ``body`` from its owner's key through ``STAGES``."""
    codec = gw.codecs.by_path[url]
    flow = Flow(kind=codec.kind, snapshot=snapshot, request_id=rid, client_ip="bulk", headers=CIMultiDict(),
                codec=codec, read_body=orjson.dumps(body))
    flow.caller = caller_of(snapshot, owner)
    for name in STAGES:
        waiting = gw.chain.find(name)(flow)  # a stage that must wait returns what to await
        if waiting is not None:
            await waiting
    return flow


def _bulk_call(flow: Flow, rid: str) -> ModelCall:
    """The model call of a flow through the stages: the bulk lane, as its key's tenant."""
    caller, model = flow.caller, flow.served()
    tenant = flow.snapshot.tenants.of(None if caller is None or caller.anonymous else caller.name)
    return ModelCall(tenant=tenant, priority=BULK, request_id=rid, token_counts=flow.token_counts,
                     deadline=asyncio.get_running_loop().time() + max(BULK_DEADLINE_S, model.facts.timeout_s))
