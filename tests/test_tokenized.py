"""Texts tokenized once (``core.tokenized``): an in-process embedder that reads its token counter's
encodings gives every text the vector it gives when it tokenizes the text itself, bit for bit,
whichever texts of a batch carry an encoding; it reads only its own counter's encodings of
texts within its limit; and a counter whose pipeline differs from the model's is not read."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from adapters.local.models import SentenceEmbedder
from core.tokenization import TokenCounter
from core.tokenized import Tokenized
from tests.support.inprocess import serve, write_configs

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TRICKY = ["", " ", "Kittens are young cats.", "café ﬁne Ｆｕｌｌ", "e\u0301 combining", "東京 São Paulo 🎉",
          "tab\tnew\nline\r", "\x00\x07 control \x7f", "zero\u200bwidth", "[CLS] [SEP] [MASK] literal",
          "مرحبا بالعالم", "नमस्ते दुनिया", "UPPER lower MiXeD", "word " * 300]  # the last is over the limit
texts = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=120)), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder(MODEL, device="cpu")


def _counter(embedder: SentenceEmbedder, change=None) -> TokenCounter:
    spec = json.loads(embedder.model.tokenizer.backend_tokenizer.to_str())
    if change is not None:
        change(spec)
    return TokenCounter(Tokenizer.from_str(json.dumps(spec)), embedder.tokenizer_path)


class TokenizerCalls:
    """The texts the model's own tokenizer is called on."""

    def __init__(self, embedder: SentenceEmbedder) -> None:
        self.cls, self.texts = type(embedder.model.tokenizer), []
        self.real = self.cls.__call__

    def __enter__(self):
        def spy(tokenizer, text, *args, **kwargs):
            self.texts.extend(text)
            return self.real(tokenizer, text, *args, **kwargs)

        self.cls.__call__ = spy
        return self

    def __exit__(self, *exc):
        self.cls.__call__ = self.real


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.lists(st.booleans(), min_size=8, max_size=8))
def test_a_batch_read_from_the_counters_encodings_is_the_batch_the_model_tokenizes_bit_for_bit(embedder, batch, keep):
    counter = _counter(embedder)
    embedder.counter = None
    alone = embedder.encode(batch)
    assert embedder.reads(counter) and counter.keeps_encodings
    counts, carried = counter.count_keeping(batch)
    mixed = [c if k else t for c, t, k in zip(carried, batch, keep, strict=False)]
    with TokenizerCalls(embedder) as calls:
        got = embedder.encode(mixed)
    assert got.tobytes() == alone.tobytes()
    limit = embedder.max_input_tokens
    tokenized_here = [t for t, n, k in zip(batch, counts, keep, strict=False) if not k or n > limit]
    assert calls.texts == tokenized_here  # read: the others; over the limit: cut by the model, as before


def test_only_the_models_own_counter_is_read(embedder):
    mine, other = _counter(embedder), _counter(embedder)
    assert embedder.reads(mine)
    _, carried = other.count_keeping(["Kittens are young cats.", "Dogs bark."])
    assert all(type(t) is Tokenized for t in carried)
    with TokenizerCalls(embedder) as calls:
        embedder.encode(carried)
    assert calls.texts == carried


def test_a_counter_that_tokenizes_otherwise_is_not_read(embedder):
    def keep_case(spec):
        spec["normalizer"]["lowercase"] = False

    changed = _counter(embedder, keep_case)
    embedder.counter = None
    assert not embedder.reads(changed)
    assert not changed.keeps_encodings and embedder.counter is None


def test_a_model_that_splits_special_tokens_written_in_text_does_not_read_a_counter_that_does_not(tmp_path):
    # tokenizer.json is the same; tokenizer_config.json's split_special_tokens (which the saved
    # pipeline does not hold) makes the model read "[CLS]" in a text as characters, the counter as a token
    from core.packaged import packaged_minilm_dir

    folder = tmp_path / "minilm-split"
    folder.mkdir()
    for entry in packaged_minilm_dir().iterdir():
        if entry.name != "tokenizer_config.json":
            (folder / entry.name).symlink_to(entry)
    config = json.loads((packaged_minilm_dir() / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "split_special_tokens": True}))
    model = SentenceEmbedder(str(folder), device="cpu")
    counter = TokenCounter(Tokenizer.from_file(str(folder / "tokenizer.json")), str(folder))
    text = "[CLS] what is [MASK]?"
    assert model.model.tokenizer([text])["input_ids"][0] != counter._tok.encode(text).ids  # they do differ
    assert not model.reads(counter) and not counter.keeps_encodings


def test_a_changed_text_carries_nothing(embedder):
    _, (carried,) = _counter(embedder).count_keeping(["Kittens are young cats. "])
    assert type(carried) is Tokenized and carried == "Kittens are young cats. "
    for changed in ("query: " + carried, carried[:-1], carried.strip(), carried.lower(), f"{carried}",
                    copy.deepcopy(carried), pickle.loads(pickle.dumps(carried))):  # noqa: S301  # our own bytes
        assert type(changed) is str


async def test_a_served_request_runs_the_counted_encodings_and_answers_as_the_bare_model(aiohttp_client, tmp_path,
                                                                                        embedder):
    routing = {"embeddings": [{"model": "minilm", "served_name": MODEL, "upstream": {"type": "local"}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    batch = ["Kittens are young cats.", "café ﬁne 東京", "query about dogs"]
    embedder.counter = None
    bare = embedder.encode(batch)
    with TokenizerCalls(embedder) as calls:
        answer = await client.post("/v1/embeddings", json={"model": "minilm", "input": batch})
        body = await answer.json()
    assert answer.status == 200, body
    assert calls.texts == []  # the served model (the spy sees every instance) read the counted encodings
    got = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], dtype=np.float32)
    assert got.tobytes() == bare.tobytes()


async def test_a_tokenizer_the_check_cannot_read_leaves_the_model_loading_and_tokenizing_itself(
        aiohttp_client, tmp_path, embedder, monkeypatch):
    import adapters.local.models as models

    def unreadable(hf_tokenizer, counter_tokenizer):
        raise RuntimeError("a tokenizer this check does not know")

    monkeypatch.setattr(models, "same_pipeline", unreadable)
    routing = {"embeddings": [{"model": "minilm", "served_name": MODEL, "upstream": {"type": "local"}}]}
    client = await serve(aiohttp_client, write_configs(tmp_path, routing=routing))
    embedder.counter = None
    bare = embedder.encode(["Kittens are young cats."])
    answer = await client.post("/v1/embeddings", json={"model": "minilm", "input": ["Kittens are young cats."]})
    body = await answer.json()
    assert answer.status == 200, body
    assert np.array(body["data"][0]["embedding"], dtype=np.float32).tobytes() == bare[0].tobytes()
