"""Feature flags of core's stages and scheduling, each documented (a plugin declares its own, as
``plugins.cache`` does ``embedding_cache``).

Turn flags on with ``ROUTER_FEATURE_FLAGS=a,b`` or ``feature_flags: [a, b]`` in routing.yaml
(reloadable). Stages ask ``flow.snapshot.flag(name)``.
"""

from __future__ import annotations

from core import hookimpl
from core.scheduling.queues import COALESCE as COALESCE_EMBEDDINGS

FLAGS: dict[str, str] = {
    "truncate_inputs": (
        "An input or rerank document over ROUTER_DOCUMENT_TOKEN_LIMIT is cut to the limit instead of "
        "answering 413; usage reports the cut count. ROUTER_SAFE_REQUEST_TOKEN_LIMIT still applies."),
    "rate_limit_fail_open": (
        "When the shared rate-limit store (Redis) cannot be reached, admit requests unchecked instead "
        "of answering 503. Either way the failure is logged and counted in "
        "maas_rate_limit_store_errors_total."),
    COALESCE_EMBEDDINGS: "Merge concurrent small embedding requests for one route into one adapter call "
                         "(within coalesce_wait_ms, default 2 ms) and split the result; see core.scheduling.queues.",
}


@hookimpl
def register_feature_flags(register):
    for name, description in FLAGS.items():
        register(name, description)
