"""Texts tokenized once: a text whose tokens were counted carries that encoding to an in-process
model with the same tokenizer, which runs it without tokenizing it again.

A ``Tokenized`` text is a ``str`` (everything else reads, hashes, compares and serializes it as
the text it is) that also holds the ids and token types its counter gave it. Any change to the
text (a cut at the model's limit, a prompt put before it) makes a plain ``str``, which carries
nothing, so an encoding only ever travels with the exact text it was made from. A counter makes
them only while ``keeps_encodings`` is set, which an in-process model sets when it has checked
that its own tokenizer is the counter's pipeline (``same_pipeline``); it takes an encoding only
from that counter and only within its length limit (where it would cut the text itself).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from typing import Any

# what a tokenizer's pipeline is apart from its truncation and padding (which a counter turns off)
_SETTINGS = ("truncation", "padding")


class Tokenized(str):
    """A text and the encoding its counter made of it (special tokens included)."""

    ids: array[int]
    type_ids: array[int]
    counter: object

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return str, (str(self),)  # a copy or a pickle is the plain text: the encoding stays in its process


def kept(texts: Sequence[str], encodings: Sequence[Any], counter: object) -> tuple[list[int], list[str]]:
    """The token counts of ``encodings`` (``tokenizers.Encoding``), and ``texts`` as ``Tokenized``
    texts holding them: as 4-byte arrays (a list of ids would hold a request's tokens at 36 bytes
    each until it ends)."""
    counts: list[int] = []
    out: list[str] = []
    for text, encoding in zip(texts, encodings, strict=True):
        item = Tokenized(text)
        item.ids, item.type_ids, item.counter = array("i", encoding.ids), array("i", encoding.type_ids), counter
        counts.append(len(item.ids))
        out.append(item)
    return counts, out


def known(texts: Sequence[str], counter: object, limit: int) -> list[int]:
    """The positions of ``texts`` that carry ``counter``'s encoding of at most ``limit`` tokens."""
    return [i for i, text in enumerate(texts)
            if type(text) is Tokenized and text.counter is counter and len(text.ids) <= limit]


def features(texts: Sequence[str], positions: Sequence[int], names: Sequence[str]) -> dict[str, list[Any]]:
    """What a Hugging Face tokenizer whose model reads ``names`` gives for the texts at
    ``positions`` (unpadded): their ids, token types and an attention mask of ones."""
    picked: list[Any] = [texts[i] for i in positions]
    rows = {"input_ids": lambda t: t.ids, "token_type_ids": lambda t: t.type_ids,
            "attention_mask": lambda t: array("i", [1]) * len(t.ids)}
    return {name: [rows[name](t) for t in picked] for name in names}


def same_pipeline(hf_tokenizer: Any, counter_tokenizer: Any) -> bool:
    """Whether a Hugging Face fast tokenizer encodes as ``counter_tokenizer`` (a ``tokenizers``
    Tokenizer) does, apart from truncation and padding, and gives no inputs but ids, token types
    and an attention mask: then the counter's encoding of a text within the model's limit is
    what the model's tokenizer gives. Besides their saved pipelines, what the saved form leaves
    out is compared too: whether special tokens written in a text are split (``transformers``'
    ``split_special_tokens``), and both tokenizers' ids for every added token in a text."""
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    names = set(getattr(hf_tokenizer, "model_input_names", ()))
    if backend is None or not names <= {"input_ids", "token_type_ids", "attention_mask"}:
        return False
    splits = [getattr(hf_tokenizer, "split_special_tokens", False), getattr(backend, "encode_special_tokens", False)]
    if any(splits) or getattr(counter_tokenizer, "encode_special_tokens", False):
        return False
    if _pipeline(backend) != _pipeline(counter_tokenizer):
        return False
    probe = [*_PROBE, *(f"a {token} b" for token in hf_tokenizer.get_added_vocab())]
    probe.append(" ".join(probe))
    return list(hf_tokenizer(probe)["input_ids"]) == [e.ids for e in counter_tokenizer.encode_batch(probe)]


_PROBE = ["", "Kittens are young cats.", "café ﬁne Ｆｕｌｌ e\u0301", "東京 São Paulo 🎉", "tab\tnew\nline\r",
          "\x00\x07 control \x7f", "zero\u200bwidth", "UPPER lower MiXeD 1234.5"]


def _pipeline(tokenizer: Any) -> dict[str, Any]:
    return {k: v for k, v in json.loads(tokenizer.to_str()).items() if k not in _SETTINGS}


def padded(tokenizer: Any, encoded: Any, members: list[int], length: int) -> dict[str, Any]:
    """The ``members`` of a tokenized list padded to ``length`` as the tokenizer pads (its pad id,
    a zero attention mask and token type), as tensors."""
    import numpy as np
    import torch

    if tokenizer.padding_side != "right":
        return tokenizer.pad({k: [list(v[i]) for i in members] for k, v in encoded.items()},
                             padding="max_length", max_length=length, return_tensors="pt")
    fill = {"input_ids": tokenizer.pad_token_id or 0}
    features = {}
    for name, rows in encoded.items():
        grid = np.full((len(members), length), fill.get(name, 0), dtype=np.int64)
        for r, i in enumerate(members):
            grid[r, :len(rows[i])] = rows[i]
        features[name] = torch.from_numpy(grid)
    return features
