"""A request too large for its deadline is refused before it is tokenized: its tokens are bounded
from below without the tokenizer (``TokenCounter.at_least``), and a bound that is never above
the count can refuse only what the count would refuse too. The bound is checked against the
real count on three kinds of tokenizer (WordPiece, byte-level BPE, SentencePiece-style Unigram)
and hostile text; the HTTP tests count the tokenizer's calls."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from core import hookimpl
from core.adapters import Adapter, Batching, EmbedResult
from core.tokenization import DEFAULT_TOKENIZER, TokenCounter, load_counter
from tests.support.inprocess import echo_plugin_manager, write_configs

CORPUS = ["the quick brown fox jumps over the lazy dog", "indexing documents for retrieval, again and again",
          "naïve café déjà vu — Ærøskøbing", "中文没有空格的句子也能切分", "emoji 😀 and symbols #@!$%^&*()"]
HOSTILE = ["", " ", "\t\n\r ", "a\x1cb\x0bc\x0cd", "é\u0301 \u0301\u0301 \u200b \u200d x", "x" * 3000,
           "word " * 400, "中文没有空格的句子" * 50, "a.b,c;d!e?f", "\x00\x01 \x7f", "ＦＵＬＬ　ＷＩＤＴＨ　ｔｅｘｔ",
           "ﬁ ﬂ ㎞ ½", "😀" * 30, "\u3000".join(["w"] * 20), "\u00a0".join(["nbsp"] * 20)]


def _trained(model, trainer, normalizer, pre_tokenizer, decoder) -> TokenCounter:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    return TokenCounter(tokenizer, "trained")


def _counters() -> dict[str, TokenCounter]:
    return {
        "wordpiece": load_counter(DEFAULT_TOKENIZER),
        "byte-level bpe": _trained(models.BPE(), trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
                                   None, pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()),
        "unigram": _trained(models.Unigram(), trainers.UnigramTrainer(vocab_size=120, show_progress=False,
                                                                      unk_token="<unk>", special_tokens=["<unk>"]),  # noqa: S106
                            normalizers.NFKC(), pre_tokenizers.Metaspace(), decoders.Metaspace()),
    }


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces = " ".join(CORPUS).split() + ["\t", "\n", "  ", "\u200b", "\u0301", "\x1c", "—", "ß"]
    return [" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(200)] + HOSTILE


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level bpe", "unigram"])
def test_the_bound_is_never_above_the_count(kind):
    counter = _counters()[kind]
    for seed in range(3):
        texts = _texts(seed)
        for text, bound, count in zip(texts, counter.at_least(texts), counter.count(texts), strict=True):
            assert bound <= count, (kind, text[:40], bound, count)
    queries = ["a short query", "中文 query", ""]
    for query in queries:
        docs = _texts(7)
        bounds, counts = counter.at_least_query_documents(query, docs), counter.count_query_documents(query, docs)
        assert all(b <= c for b, c in zip(bounds, counts, strict=True))


def test_the_bound_is_close_on_plain_english():
    counter = load_counter(DEFAULT_TOKENIZER)
    texts = [" ".join(random.Random(i).choice(CORPUS[:2]).split()) * 3 for i in range(100)]
    assert sum(counter.at_least(texts)) >= 0.8 * sum(counter.count(texts))


class SlowOnesAdapter(Adapter):
    """Answers at once; admission believes it was timed at load at 0.3 s a call and 2 ms a padded token."""

    def batching(self, route):
        return Batching(max_in_flight=1, split=True, max_batch_size=32, speed=(0.3, 0.002))

    async def embed(self, route, inputs, call):
        return EmbedResult(np.ones((len(inputs), 4), dtype=np.float32))


class SlowWholeAdapter(SlowOnesAdapter):
    """The same speed, each request one call (an HTTP upstream's way): an idle model runs it at
    once (``call_now``), refusing only what could not finish at all."""

    def batching(self, route):
        return Batching(max_in_flight=1, speed=(0.3, 0.002))


class SlowOnesPlugin:
    @hookimpl
    def register_adapters(self, register):
        register("slow-ones", SlowOnesAdapter)
        register("slow-whole", SlowWholeAdapter)


@pytest.fixture
async def slow_ones(aiohttp_client, tmp_path, monkeypatch):
    from core.app import create_app
    from core.http import GATEWAY

    calls: list[str] = []
    for name in ("count", "count_pairs", "count_query_documents", "encode", "tokenize", "windows"):
        original = getattr(TokenCounter, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TokenCounter, name, counted)
    settings = write_configs(tmp_path, routing={"embeddings": [
        {"model": "slow", "upstream": {"type": "slow-ones"}, "prompts": "none"},
        {"model": "slow-whole", "upstream": {"type": "slow-whole"}, "prompts": "none"}]})
    pm = echo_plugin_manager()
    pm.register(SlowOnesPlugin(), name="slow-ones")
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client, calls


async def test_a_request_surely_too_large_is_refused_without_tokenizing_it(slow_ones):
    client, calls = slow_ones
    inputs = [f"sentence number {i} about a topic" for i in range(2048)]  # 64 batches of over 0.8 s: past 30 s
    response = await client.post("/v1/embeddings", json={"model": "slow", "input": inputs})
    assert response.status == 413 and response.headers["x-should-retry"] == "false"
    assert (await response.json())["error"]["code"] == "request_too_large_for_deadline"
    assert calls == []


async def test_a_request_within_the_deadline_only_without_admissions_margin_is_refused_without_tokenizing(slow_ones):
    """33 batches of 0.81 s by the lower bound: 27 s, inside the 30 s timeout, but not with the 1.2x
    margin that admission refuses with once the inputs are counted: refused before the count too."""
    client, calls = slow_ones
    inputs = [f"sentence number {i} about a topic" for i in range(33 * 32)]
    response = await client.post("/v1/embeddings", json={"model": "slow", "input": inputs})
    assert response.status == 413 and (await response.json())["error"]["code"] == "request_too_large_for_deadline"
    assert calls == []


async def test_a_whole_call_that_fits_its_deadline_only_without_the_margin_runs_on_an_idle_model(slow_ones):
    """One call of 13,352 tokens: 27 s, inside the 30 s timeout. An idle model runs a whole call at
    once without admission's margin, so the refusal before the count must not apply it either."""
    client, calls = slow_ones
    inputs = [f"sentence number {i} about a topic" for i in range(1669)]
    response = await client.post("/v1/embeddings", json={"model": "slow-whole", "input": inputs})
    assert response.status == 200, await response.text()


async def test_a_large_request_that_may_fit_is_tokenized_and_answered(slow_ones):
    client, calls = slow_ones
    inputs = [f"sentence number {i} about a topic that is long enough to be a large request" for i in range(256)]
    response = await client.post("/v1/embeddings", json={"model": "slow", "input": inputs})  # 8 batches: ~8 s
    assert response.status == 200 and "count" in calls
