"""What a request asks of the model, besides its inputs, that changes the answer.

vLLM's ``normalize`` (or ``use_activation``) and ``add_special_tokens`` on embeddings, and
``activation`` (vLLM), ``raw_scores`` (Infinity, TEI) on rerank and score, are read by their
codecs into one ``Variant`` on the internal request (``EmbeddingsRequest.variant``,
``RerankRequest.variant``). Everything that must tell one answer from another reads it here and
nowhere else: the served model passes it to the scheduler (a batch holds one variant) and to the
adapter (``CallContext.variant``), the embedding cache folds ``Variant.key`` into every item's
key, and an adapter declares which fields it can honour (``Adapter.variants``); a request asking
for one it cannot is a 400 before anything is counted. The default variant is what the gateway
always answered, and keys nothing extra: entries made before this existed stay valid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Variant:
    #: embeddings: False gives the pooled vector before the model's own normalisation step
    normalize: bool = True
    #: embeddings: False has the model read each input without its special tokens ([CLS], [SEP]…)
    add_special_tokens: bool = True
    #: rerank and score: False gives the cross-encoder's raw logit instead of its sigmoid score
    activation: bool = True

    def changed(self) -> dict[str, bool]:
        """The fields that differ from the default, by name."""
        return {k: v for k, v in asdict(self).items() if v != getattr(DEFAULT_VARIANT, k)}

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_VARIANT

    def key(self) -> bytes:
        """Bytes that tell this variant from every other; empty for the default."""
        changed = self.changed()
        return json.dumps(changed, sort_keys=True).encode() if changed else b""


DEFAULT_VARIANT = Variant()
