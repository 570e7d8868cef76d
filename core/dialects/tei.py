"""Text Embeddings Inference's API: ``/embed``, ``/rerank`` (a body with ``texts``) and ``/tokenize``.

TEI names no model; the request goes to routing.yaml's ``defaults`` for its kind (a ``model``
field, our addition, picks another). ``truncate`` false (TEI's default) refuses an input over
the model's limit, true cuts it at the end (``truncation_direction`` Right; Left is not
served). Scores are the model's probabilities; ``raw_scores`` gives the logits and ``normalize``
false the vectors as pooled, where the model's adapter can (``core.variant``).
"""

from __future__ import annotations

from typing import Any

from core.dialects.base import Codec, Parsed, ParseLimits, count_items
from core.dialects.fields import BOOLEAN, NONEMPTY_STRING, POSITIVE_INT, STRINGS, Field, FieldTable, enum, one_of
from core.dialects.openai import GuideRerank
from core.dialects.quantize import json_rows
from core.dialects.vllm import RAW_LOGITS
from core.kinds import EMBEDDINGS, RERANK
from core.requests import (
    CUT_END,
    REFUSE,
    EmbeddingsOutcome,
    EmbeddingsRequest,
    OverLimit,
    RerankOutcome,
    RerankRequest,
    TokenizeRequest,
)
from core.variant import DEFAULT_VARIANT, Variant
from core.vectors import normalise

INPUTS = one_of(NONEMPTY_STRING, STRINGS)
MODEL = Field("model", NONEMPTY_STRING, "the model alias (default: routing.yaml's defaults for the kind)")
TRUNCATE = Field("truncate", BOOLEAN, "true: cut an over-long input at the end; false (default): refuse it")
DIRECTION = Field("truncation_direction", enum("Right"), "Right (cutting the end); Left is not served")
PROMPT = Field("prompt_name", enum("query", "document", "classification", "clustering"),
               "selects the route's prompt")


def _inputs(b: Any, limits: ParseLimits) -> list[str]:
    raw = b.get("inputs")
    inputs = [raw] if isinstance(raw, str) else list(raw)
    count_items(len(inputs), limits, "inputs")
    return inputs


def _normalisation(b: Any) -> dict[str, Any]:
    """TEI's ``normalize``: true (its default) has the gateway make unit vectors after the cache
    (a field of the space); false asks the model for its vectors before its own normalisation."""
    if b.get("normalize", True) is False:
        return {"variant": Variant(normalize=False)}
    return {"fields": {"normalized": True}}


def _truncation(b: Any) -> OverLimit:
    return CUT_END if b.get("truncate", False) else REFUSE


class TeiUsage:
    """TEI answers with a bare list; its usage is the ``x-compute-tokens`` header (the tokens
    computed: every rerank pair, a long document's windows each)."""

    def headers(self, outcome: Any) -> dict[str, str]:
        return {"x-compute-tokens": str(outcome.tokens)}


class TeiEmbed(TeiUsage, Codec[None]):
    name = "teiEmbed"
    path = "/embed"
    kind = EMBEDDINGS
    summary = "Embeddings: TEI's body; the answer is a list of vectors"
    fields = FieldTable((
        Field("inputs", INPUTS, "a string or strings", required=True), MODEL,
        Field("normalize", BOOLEAN, "true (default): unit-length vectors; false: as the model pooled them (where "
                                    "the model's adapter can give them; refused elsewhere)"),
        TRUNCATE, DIRECTION, PROMPT,
        Field("dimensions", POSITIVE_INT, "truncate to this many dimensions and renormalise"),
    ))
    response_schema = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        b = self.fields.read(body, self.path)
        return Parsed(EmbeddingsRequest(model=b.get("model"), inputs=_inputs(b, limits), is_tokens=False,
                                        dimensions=b.get("dimensions"), input_type=b.get("prompt_name"),
                                        truncation=_truncation(b), **_normalisation(b)))

    def render(self, request: EmbeddingsRequest, state: None, outcome: EmbeddingsOutcome) -> Any:
        return json_rows(normalise(outcome.vectors) if request.variant.normalize else outcome.vectors)


class TeiRerank(TeiUsage, Codec[None]):
    name = "teiRerank"
    path = "/rerank"
    kind = RERANK
    summary = "Rerank: TEI's body (texts); the answer is a list of {index, score}"
    fields = FieldTable((
        Field("query", NONEMPTY_STRING, "the query", required=True),
        Field("texts", STRINGS, "the documents", required=True), MODEL,
        Field("raw_scores", BOOLEAN, "true: the raw logits (where the model's adapter can give them; refused "
                                     "elsewhere); false (default): the model's probabilities"),
        Field("return_text", BOOLEAN, "put each text in its result"), TRUNCATE, DIRECTION,
        Field("top_n", POSITIVE_INT, "how many results, best first (LiteLLM's huggingface/ provider sends it)"),
    ))
    response_schema = {"type": "array", "items": {"type": "object", "required": ["index", "score"]}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        b = self.fields.read(body, self.path)
        texts = b.get("texts")
        count_items(len(texts), limits, "texts")
        return Parsed(RerankRequest(model=b.get("model"), query=b.get("query"), documents=list(texts),
                                    top_n=b.get("top_n"), return_documents=bool(b.get("return_text", False)),
                                    truncation=_truncation(b),
                                    variant=RAW_LOGITS if b.get("raw_scores") else DEFAULT_VARIANT))

    def render(self, request: RerankRequest, state: None, outcome: RerankOutcome) -> Any:
        out = []
        for index, score in outcome.ranked:
            item: dict[str, Any] = {"index": index, "score": score}
            if request.return_documents:
                item["text"] = outcome.documents[index]
            out.append(item)
        return out


class SharedRerank(GuideRerank):
    """``/rerank``: TEI's body when it has ``texts``, else the guide's (LiteLLM's infinity/ and
    hosted_vllm/ providers call it with that one)."""

    path = "/rerank"
    name = "rerankShared"
    tei = TeiRerank()

    def select(self, body: Any) -> Codec:
        return self.tei if isinstance(body, dict) and "texts" in body else self

    def alternatives(self) -> tuple[Codec, ...]:
        return (self, self.tei)


class TeiTokenize(Codec[None]):
    name = "teiTokenize"
    path = "/tokenize"
    kind = EMBEDDINGS
    summary = "Tokenize with the model's own tokenizer (TEI's body)"
    fields = FieldTable((
        Field("inputs", INPUTS, "a string or strings", required=True), MODEL,
        Field("add_special_tokens", BOOLEAN, "include the model's special tokens (default true)"), PROMPT,
    ))
    response_schema = {"type": "array", "items": {"type": "array", "items": {"type": "object"}}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        b = self.fields.read(body, self.path)
        return Parsed(TokenizeRequest(model=b.get("model"), inputs=_inputs(b, limits), is_tokens=False,
                                      input_type=b.get("prompt_name"),
                                      add_special_tokens=b.get("add_special_tokens", True) is not False))

    def render(self, request: TokenizeRequest, state: None, outcome: Any) -> Any:
        return outcome.tokens_by_input
