"""Rebuild a torch fp32 cross-encoder from the packaged INT8 ONNX ms-marco-MiniLM-L-12-v2.

The fp32 original cannot be fetched here; only the INT8 ONNX export ships in a package. Every
quantized weight is dequantized (``(q - zero_point) * scale``) into a BertForSequenceClassification,
so both paths hold the same weights and differ in how they compute: int8 matmuls with
dynamically quantized activations (onnxruntime) against fp32 throughout (torch). That is the
speed and agreement question of serving INT8 instead of fp32.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _linear_name(output: str) -> str | None:
    """'/bert/encoder/layer.3/attention/self/query/MatMul_output_0_output_quantized' → its Linear."""
    m = re.match(r"^/(bert/encoder/layer\.\d+/[a-z_/]+?)/MatMul_output", output)
    if m:
        return m.group(1).replace("/", ".").replace("layer.", "layer.", 1)
    if output.startswith("/bert/pooler/dense/"):
        return "bert.pooler.dense"
    if output.startswith("logits_"):
        return "classifier"
    return None


def build_fp32(onnx_dir: Path, out_dir: Path) -> Path:
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertForSequenceClassification

    if (out_dir / "model.safetensors").exists():
        return out_dir
    graph = onnx.load(str(onnx_dir / "model.onnx")).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def deq(prefix: str) -> np.ndarray:
        q = init[prefix + "_quantized"].astype(np.float32)
        return (q - init[prefix + "_zero_point"].astype(np.float32)) * init[prefix + "_scale"]

    state: dict[str, np.ndarray] = {k: v for k, v in init.items()
                                    if v.dtype == np.float32 and not k.endswith("_scale")
                                    and not k.startswith("onnx::")}
    for emb in ("word", "position", "token_type"):
        state[f"bert.embeddings.{emb}_embeddings.weight"] = deq(f"bert.embeddings.{emb}_embeddings.weight")
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        linear = _linear_name(node.output[0])
        if linear is None:
            raise ValueError(f"cannot place quantized matmul {node.output[0]}")
        weight = node.input[1].removesuffix("_quantized")
        state[f"{linear}.weight"] = deq(weight).T  # ONNX MatMul is x @ W; torch Linear keeps W transposed
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k)))
    hidden = state["bert.embeddings.word_embeddings.weight"].shape[1]
    config = BertConfig(vocab_size=state["bert.embeddings.word_embeddings.weight"].shape[0], hidden_size=hidden,
                        num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
                        max_position_embeddings=state["bert.embeddings.position_embeddings.weight"].shape[0],
                        num_labels=1)
    model = BertForSequenceClassification(config)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit BERT: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    for name in _TOKENIZER_FILES:
        if (onnx_dir / name).exists():
            shutil.copy(onnx_dir / name, out_dir / name)
    return out_dir
