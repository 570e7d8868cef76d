"""Cohere's billing unit for rerank, reported in ``meta.billed_units.search_units`` of the
Cohere-shaped answers (``/v1/rerank``, ``/v2/rerank``, the guide's ``/rerank`` body).

Cohere's rule (cohere.com/pricing, "How does Cohere's pricing work?" on docs.cohere.com): a search
unit is one query with up to 100 documents to rank; a document longer than 500 tokens together
with the query is split into chunks, each counting as one document. So a document whose pair has
``t`` tokens counts ``ceil(t / 500)`` documents, and a request ``ceil(sum / 100)`` units, at least
one. The tokens are the route's tokenizer's, for the document as read (after any cut it asked for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.requests import RerankOutcome

CHUNK_TOKENS = 500  # a document with its query longer than this counts once per chunk
DOCUMENTS_PER_UNIT = 100


def search_units_of(pair_tokens: Sequence[int]) -> int:
    """Cohere's search units for documents whose (query, document) pairs have these token counts."""
    chunks = sum([max(1, math.ceil(t / CHUNK_TOKENS)) for t in pair_tokens])  # a list: no generator to resume
    return max(1, math.ceil(chunks / DOCUMENTS_PER_UNIT))


def search_units(outcome: RerankOutcome) -> int:
    """The answer's search units: by each document's tokens when counted, else one chunk each."""
    tokens = outcome.document_tokens
    return search_units_of(tokens if tokens is not None else [1] * len(outcome.documents))


def rerank_meta(version: str, outcome: RerankOutcome) -> dict:
    """Cohere's ``meta``: the API version, the search units billed and the tokens scored."""
    return {"api_version": {"version": version}, "billed_units": {"search_units": search_units(outcome)},
            "tokens": {"input_tokens": outcome.tokens}}
