"""What a request asks of the model, besides its inputs, that changes the answer.

vLLM's ``normalize`` (or ``use_activation``) and ``add_special_tokens`` on embeddings, and
``activation`` (vLLM), ``raw_scores`` (Infinity, TEI) on rerank and score, are read by their
codecs into one ``Variant`` on the internal request (``EmbeddingsRequest.variant``,
``RerankRequest.variant``). Everything that must tell one answer from another reads it here and
nowhere else: the served model passes it to the scheduler (a batch holds one variant) and to the
adapter (``CallContext.variant``) and adds ``Variant.changed`` to the call's cache-shaping fields
(``ModelCall.shaping``); the embedding space's fingerprint reads the same fields
(``EmbeddingsRequest.output_fields``, declared in ``core.space.REQUEST_FIELDS``); an adapter
declares which it can honour (``Adapter.variants``), and a request asking for one it cannot is a
400 before anything is counted. The default variant is what the gateway always answered and adds
nothing to keys or fingerprints: entries and spaces made before it existed stay valid.
"""

from __future__ import annotations

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


DEFAULT_VARIANT = Variant()
