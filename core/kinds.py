"""The kinds of model the gateway serves, one registry for every room that names one.

A route serves one ``Kind``; a request kind (``core.requests.REQUEST_KINDS``) says which kind
of model it is routed to. ``Kind`` members are strings, so YAML, JSON and metric labels read
them as they are.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"


KINDS: frozenset[Kind] = frozenset(Kind)
EMBEDDINGS, RERANK = Kind.EMBEDDINGS, Kind.RERANK
