"""Token counting: the fast pair count equals the tokenizer's own pair encoding."""

from __future__ import annotations

import pytest

from core.packaged import packaged_reranker_dir
from core.tokenization import load_counter

QUERIES = ["How many people live in Berlin?", "", "naïve café résumé — 東京 🙂", "a " * 300]
DOCS = ["Berlin has 3.7 million inhabitants.", "x", "Ünïcödé and    spaces\tand\nnewlines", "b " * 700]


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "reranker"])
def test_query_documents_count_equals_pair_encoding(name):
    counter = load_counter(str(packaged_reranker_dir()) if name == "reranker" else name)
    for query in QUERIES:
        assert counter.count_query_documents(query, DOCS) == counter.count_pairs([(query, d) for d in DOCS])


def test_truncate_keeps_whole_tokens_within_the_limit():
    counter = load_counter("sentence-transformers/all-MiniLM-L6-v2")
    text = "one two three four five six"
    assert counter.count([counter.truncate(text, 5)]) == [5]  # [CLS] one two three [SEP]
    assert counter.truncate(text, 5) == "one two three"
    assert counter.truncate_plain(text, 2) == "one two"
    assert counter.truncate(text, 100) == text


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "reranker"])
def test_one_text_counts_as_it_does_among_others(name):
    """One text is counted with ``encode`` (the GIL held), several with ``encode_batch``: the same
    count either way, special tokens included."""
    counter = load_counter(str(packaged_reranker_dir()) if name == "reranker" else name)
    texts = [*QUERIES, *DOCS, " leading space", "[CLS] [SEP] [MASK] <s> </s>", "\x00\x07 control"]
    together = counter.count(texts)
    assert [counter.count([t])[0] for t in texts] == together
    assert together[1] == counter.specials  # the empty text: its special tokens only
