"""Cohere's search units: one per query per 100 documents, a document longer than 500 tokens with
its query counting once per 500-token chunk; through the router, by the route's tokenizer."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from core.dialects.units import search_units_of
from tests.support.inprocess import gateway_of, serve, write_configs

SHORT = st.integers(min_value=1, max_value=500)
ANY = st.integers(min_value=1, max_value=5000)


@given(st.integers(min_value=1, max_value=250))
def test_short_documents_cost_a_unit_per_hundred(n):
    assert search_units_of([500] * n) == math.ceil(n / 100)
    assert search_units_of([1] * n) == math.ceil(n / 100)


@given(st.lists(ANY, min_size=1, max_size=250))
def test_a_long_document_costs_as_its_chunks_of_500_would(tokens):
    as_chunks = [500] * sum(math.ceil(t / 500) for t in tokens)  # each chunk one short document
    assert search_units_of(tokens) == search_units_of(as_chunks) == math.ceil(len(as_chunks) / 100)


@given(st.lists(ANY, min_size=1, max_size=250), ANY)
def test_more_or_longer_documents_never_cost_less(tokens, extra):
    units = search_units_of(tokens)
    assert search_units_of([*tokens, extra]) >= units
    assert search_units_of([tokens[0] + extra, *tokens[1:]]) >= units
    assert 1 <= units <= math.ceil(len(tokens) * 10 / 100)


def test_the_edges():
    assert search_units_of([500] * 100) == 1
    assert search_units_of([500] * 100 + [1]) == 2
    assert search_units_of([501]) == 1  # two chunks, one unit
    assert search_units_of([1] * 99 + [501]) == 2  # 101 chunks
    assert search_units_of([1] * 98 + [1000]) == 1  # exactly 100 chunks
    assert search_units_of([50_000]) == 1  # 100 chunks
    assert search_units_of([50_001]) == 2


async def test_the_router_bills_each_document_by_its_tokens(aiohttp_client, tmp_path):
    """Documents of random lengths and counts (1..250), some long enough to be chunked, some read in
    windows by a short model: the answer's units follow the pairs as the route's tokenizer counts them."""
    routing = {"rerank": [{"model": "r", "max_input_tokens": 4096, "upstream": {"type": "echo"}},
                          {"model": "r-short", "max_input_tokens": 256, "upstream": {"type": "echo"}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    counter = gateway_of(client).snapshot.models["r"].counter
    rng = random.Random(22)
    seen_long = 0
    for case in range(12):
        n = rng.choice([1, 2, 99, 100, 101, 150, 199, 200, 201, 250]) if case < 10 else rng.randint(1, 250)
        docs = [" ".join(f"w{rng.randint(0, 999)}" for _ in range(rng.choice([1, 5, 40, 200, 700])))
                for _ in range(n)]
        query = "what is it"
        pairs = counter.count_query_documents(query, docs)
        seen_long += sum(t > 500 for t in pairs)
        expected = math.ceil(sum(math.ceil(t / 500) for t in pairs) / 100)
        for model, path in (("r", "/v2/rerank"), ("r-short", "/v1/rerank")):
            resp = await client.post(path, json={"model": model, "query": query, "documents": docs, "top_n": 1})
            body = await resp.json()
            assert resp.status == 200, body
            assert body["meta"]["billed_units"]["search_units"] == expected, (model, n)
    assert seen_long > 0  # the cases did include documents over 500 tokens

