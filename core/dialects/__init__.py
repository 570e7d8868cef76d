"""The wire formats the router speaks, each a codec over the one internal request model.

| path | codec | who calls it |
|---|---|---|
| ``/v1/embeddings`` | ``OpenAIEmbeddings`` | OpenAI, LangChain, LlamaIndex, Haystack, LiteLLM; Voyage, Jina, vLLM |
| ``/embeddings`` | ``InfinityEmbeddings`` | Infinity's unprefixed path (``infinity_client``, LiteLLM ``infinity/``) |
| ``/v1/rerank`` | ``GuideRerank`` | the guide, Cohere v1, Jina, Voyage, LiteLLM ``cohere/`` ``jina_ai/`` |
| ``/rerank`` | ``SharedRerank`` | TEI (``texts``); LiteLLM ``huggingface/``, ``infinity/``, ``hosted_vllm/`` |
| ``/v1/embed``, ``/v2/embed`` | ``CohereEmbedV1``, ``CohereEmbedV2`` | Cohere SDKs (``Client``, ``ClientV2``) |
| ``/v2/rerank`` | ``CohereRerankV2`` | Cohere ``ClientV2`` |
| ``/embed``, ``/tokenize`` | ``TeiEmbed``, ``TeiTokenize`` | TEI clients, LiteLLM ``huggingface/`` |
| ``/score``, ``/v1/score`` | ``VllmScore``, ``VllmScoreV1`` | vLLM's score clients (over the rerank models) |

Errors are Cohere-shaped (``{"message"}``) on Cohere's own paths and OpenAI-shaped everywhere
else: each codec renders its own (``Codec.render_error``). The built-in plugin ``plugins.codecs``
registers ``BUILTIN_CODECS``; a third party adds or replaces one with ``register_codecs``.
"""

from __future__ import annotations

from core.dialects.base import Codec, Parsed, ParseLimits
from core.dialects.cohere import CohereEmbedV1, CohereEmbedV2, CohereRerankV2
from core.dialects.openai import GuideRerank, InfinityEmbeddings, OpenAIEmbeddings
from core.dialects.registry import CodecRegistry
from core.dialects.tei import SharedRerank, TeiEmbed, TeiTokenize
from core.dialects.vllm import VllmScore, VllmScoreV1

BUILTIN_CODECS: tuple[Codec, ...] = (
    OpenAIEmbeddings(), InfinityEmbeddings(), GuideRerank(), SharedRerank(), CohereEmbedV1(), CohereEmbedV2(),
    CohereRerankV2(), TeiEmbed(), TeiTokenize(), VllmScore(), VllmScoreV1())

__all__ = ["BUILTIN_CODECS", "Codec", "CodecRegistry", "ParseLimits", "Parsed"]
