"""Stage ``token_limit``: tokenize once, with the target model's tokenizer.

The counts land on ``flow.token_counts`` and serve the limits, usage and token budgets.
"""

from __future__ import annotations

from core import hookimpl
from core.flow import Flow


class TokenLimitStage:
    name = "token_limit"

    async def __call__(self, flow: Flow) -> None:
        counter = flow.snapshot.counters.get(flow.request.model)
        if counter is None:
            return  # unknown model: the route stage answers 404
        req = flow.request
        if flow.kind == "embeddings" and req.is_tokens:
            flow.token_counts = [len(ids) for ids in req.inputs]
        else:
            flow.token_counts = counter.count(req.texts)


@hookimpl
def register_stages(register):
    register(TokenLimitStage())
