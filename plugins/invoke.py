"""Stage ``adapter``: run the request on its served model; the outcome is the chain's answer.

The served model (``core.served``) is the scheduler, the cache and the adapter behind one
interface; this stage says who calls (the key's tenant, with ``X-Priority`` where the key may
choose), until when, and with which token counts. The HTTP edge has the codec render the outcome.

An embeddings answer names its space (``X-Embedding-Space``, ``core.space``); a request that
pins one (``X-Expect-Embedding-Space``) the model no longer serves is refused (409) here, before
the model is called. Only when no width is known yet (a remote model's first answer) is the
check made on the answer, which is then not sent.
"""

from __future__ import annotations

from core import hookimpl
from core.flow import Flow
from core.scheduling.tenants import PRIORITY_HEADER
from core.served import ModelCall
from core.space import EXPECT_HEADER, HEADER, check_expected, header_value


class InvokeStage:
    name = "adapter"

    async def __call__(self, flow: Flow) -> None:
        # ``route`` and ``parse`` ran before: read directly (the accessors only for their error)
        model = flow.model if flow.model is not None else flow.served()
        req = flow.request if flow.request is not None else flow.parsed()
        expected = flow.headers.get(EXPECT_HEADER)
        if expected is not None:
            check_expected(expected, req.spaces(model) or (expected,), model.alias)
        caller = flow.caller  # the key's tenant, at the priority it may choose
        tenant = flow.snapshot.tenants.of(None if caller is None or caller.anonymous else caller.name,
                                          flow.headers.get(PRIORITY_HEADER))
        call = ModelCall(tenant=tenant, deadline=flow.deadline(model.facts.timeout_s),
                         request_id=flow.request_id, token_counts=flow.token_counts)
        outcome = await req.run(model, call, flow.prompt_tokens)
        if outcome.spaces is not None:
            if expected is not None:
                check_expected(expected, outcome.spaces, model.alias)
            flow.response_headers[HEADER] = header_value(outcome.spaces)
        if outcome.cache_hits is not None:
            flow.response_headers["X-Cache-Hits"] = str(outcome.cache_hits)
        flow.outcome = outcome


@hookimpl
def register_stages(register) -> None:
    register(InvokeStage())
