"""The internal request types. Each carries its own behaviour: how it is counted, cut, checked
against a route, sent to an adapter and turned into an outcome that a dialect renders, so a
stage never asks which kind it holds and a new kind lives in one place.

Every wire format (``core.dialects``) parses into these and renders their outcomes.
"""


from core.requests.common import EmbeddingsOutcome, RerankOutcome, Truncation, over_limit, rank
from core.requests.embeddings import EmbeddingInput, EmbeddingsRequest, TokenizeOutcome, TokenizeRequest
from core.requests.rerank import RerankRequest

ModelRequest = EmbeddingsRequest | RerankRequest
Outcome = EmbeddingsOutcome | RerankOutcome | TokenizeOutcome

__all__ = ["EmbeddingInput", "EmbeddingsOutcome", "EmbeddingsRequest", "ModelRequest", "Outcome", "RerankOutcome",
           "RerankRequest", "TokenizeOutcome", "TokenizeRequest", "Truncation", "over_limit", "rank"]
