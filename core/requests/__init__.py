"""The internal request types, one per request kind. Each carries its own behaviour: how it is
counted, what happens over the model's limit (``truncation``), how it is checked against a route,
run on the served model and turned into an outcome that a dialect renders, so a stage never asks
which kind it holds and a new kind lives in one place.

Every wire format (``core.dialects``) parses into these and renders their outcomes.
``REQUEST_KINDS`` is the one list of them; each names the kind of model it is routed to (``kind``).
"""

from core.requests.common import EmbeddingsOutcome, RerankOutcome, over_limit, rank
from core.requests.embeddings import EmbeddingsRequest
from core.requests.rerank import RerankRequest
from core.requests.texts import EmbeddingInput
from core.requests.tokenize import TokenizeOutcome, TokenizeRequest
from core.requests.truncation import CUT_END, CUT_START, NO_LIMIT, REFUSE, WINDOWS, OverLimit

REQUEST_KINDS = (EmbeddingsRequest, RerankRequest, TokenizeRequest)
ModelRequest = EmbeddingsRequest | RerankRequest | TokenizeRequest
Outcome = EmbeddingsOutcome | RerankOutcome | TokenizeOutcome

__all__ = ["CUT_END", "CUT_START", "NO_LIMIT", "REFUSE", "REQUEST_KINDS", "WINDOWS", "EmbeddingInput",
           "EmbeddingsOutcome", "EmbeddingsRequest", "ModelRequest", "Outcome", "OverLimit", "RerankOutcome",
           "RerankRequest", "TokenizeOutcome", "TokenizeRequest", "over_limit", "rank"]
