"""What vLLM's and Infinity's clients send beside OpenAI's and the guide's fields, and vLLM's score API.

Their fields join the OpenAI embeddings table (``EMBED_EXTRAS``) and the guide's rerank table
(``RERANK_EXTRAS``); each is honoured, accepted where it changes nothing, or refused by its schema
(docs/compatibility.md has the table). What changes the model's answer (``normalize``,
``add_special_tokens``, ``activation``) becomes the request's ``core.variant.Variant``; an adapter
that cannot answer it refuses the request with a 400 before anything is counted.

``/score`` and ``/v1/score`` (``VllmScore``) are vLLM's score API over the rerank routes:
``text_1`` (one query) against ``text_2`` (one text or many), one score per ``text_2`` in its
order, each the pair's rerank ``relevance_score`` (the sigmoid; ``activation: false`` the logit).
"""

from __future__ import annotations

import time
from typing import Any

from core.dialects.base import Codec, Parsed, ParseLimits, count_items, response_id
from core.dialects.fields import BOOLEAN, NONEMPTY_STRING, STRING, STRINGS, Field, FieldTable, StrictBody, enum, one_of
from core.errors import InvalidRequest
from core.kinds import RERANK
from core.requests import CUT_END, CUT_START, RerankOutcome, RerankRequest
from core.variant import DEFAULT_VARIANT, Variant

RAW_LOGITS = Variant(activation=False)

KEEP_TOKENS: dict[str, Any] = {"type": "integer", "minimum": -1}
PRIORITY = Field("priority", {"const": 0}, "vLLM: only 0 (the gateway's priority is the API key's, or its "
                                           "X-Priority header where the key may choose)")
REQUEST_ID = Field("request_id", STRING, "vLLM: the caller's id for its own records (the gateway's is X-Request-ID)")

EMBED_EXTRAS = (
    Field("modality", enum("text"), "Infinity: the inputs' modality; only text is served"),
    Field("truncate_prompt_tokens", KEEP_TOKENS,
          "vLLM: read each input to this many tokens, special tokens included: its last ones (truncation_side "
          "right: its first); -1: to the model's limit. The inputs cut are listed in X-Truncated-Inputs"),
    Field("truncation_side", enum("left", "right"), "vLLM: which end truncate_prompt_tokens cuts (default left)"),
    Field("normalize", BOOLEAN, "vLLM: false gives the pooled vector before the model's normalisation (where the "
                                "model's adapter can; refused elsewhere)"),
    Field("use_activation", BOOLEAN, "vLLM: the same as normalize"),
    Field("add_special_tokens", BOOLEAN, "vLLM: false has the model read each input without its special tokens "
                                         "(where the model's adapter can; refused elsewhere)"),
    PRIORITY, REQUEST_ID,
    Field("embed_dtype", enum("float32"), "vLLM: base64 carries float32 (quantised outputs: output_dtype)"),
    Field("endianness", enum("native", "little"), "vLLM: base64 is little-endian, the gateway's native order"),
    Field("padding", enum("do_not_pad"), "vLLM: inputs are never padded to the model's length"),
    Field("token_ids_vocabulary", enum("cl100k_base", "model"),
          "what token-id inputs are: OpenAI's cl100k_base or the model's own vocabulary (default: the route's "
          "token_ids, in /v1/models/{id})"),
)
EMBED_NAMES = frozenset(f.name for f in EMBED_EXTRAS)
EMBED_EXCLUSIVE = (("normalize", "use_activation"), ("normalize", "normalized"), ("use_activation", "normalized"),
                   ("truncate_prompt_tokens", "truncation"), ("truncate_prompt_tokens", "truncate"))

ACTIVATION = (
    Field("activation", BOOLEAN, "vLLM: false gives the cross-encoder's raw logit instead of its sigmoid score "
                                 "(where the model's adapter can; refused elsewhere)"),
    Field("use_activation", BOOLEAN, "vLLM: the same as activation"),
    Field("softmax", BOOLEAN, "vLLM (older clients): the same as activation"),
)
RERANK_TRUNCATE = Field("truncate_prompt_tokens", KEEP_TOKENS,
                        "vLLM: read each (query, document) pair to this many tokens, cutting the document's end "
                        "(listed in X-Truncated-Inputs); -1: the route's own way with long documents")
RERANK_EXTRAS = (
    RERANK_TRUNCATE, *ACTIVATION, PRIORITY, REQUEST_ID,
    Field("raw_scores", BOOLEAN, "Infinity: true gives the raw logit (activation false)"),
)
RERANK_NAMES = frozenset(f.name for f in RERANK_EXTRAS)
RERANK_EXCLUSIVE = (("activation", "use_activation"), ("activation", "softmax"), ("use_activation", "softmax"),
                    ("activation", "raw_scores"), ("use_activation", "raw_scores"), ("softmax", "raw_scores"))


def _keep_tokens(b: StrictBody) -> int | None:
    keep = b.get("truncate_prompt_tokens")
    if keep == 0:
        raise InvalidRequest("'truncate_prompt_tokens' must be -1 (the model's limit) or at least 1",
                             param="truncate_prompt_tokens")
    return keep


def embed_extras(b: StrictBody) -> dict[str, Any]:
    """The ``EmbeddingsRequest`` arguments these fields set (only the ones the body sends)."""
    out: dict[str, Any] = {}
    normalize = b.get("normalize", b.get("use_activation"))
    specials = b.get("add_special_tokens")
    if normalize is False or specials is False:
        out["variant"] = Variant(normalize=normalize is not False, add_special_tokens=specials is not False)
    if "token_ids_vocabulary" in b:
        out["vocabulary"] = b.get("token_ids_vocabulary")
    keep = _keep_tokens(b)
    side = CUT_END if b.get("truncation_side") == "right" else CUT_START
    if keep == -1:
        out["truncation"] = side  # over the model's limit: cut, not refused
    elif keep is not None:
        out["keep_tokens"], out["keep_end"] = keep, side
    return out


def rerank_variant(b: StrictBody) -> Variant:
    activation = b.get("activation", b.get("use_activation", b.get("softmax")))
    if b.get("raw_scores") is True:
        activation = False
    return RAW_LOGITS if activation is False else DEFAULT_VARIANT


def rerank_extras(request: RerankRequest, b: StrictBody) -> RerankRequest:
    """``request`` with what these fields say: its variant and its per-pair token cap."""
    request.variant = rerank_variant(b)
    keep = _keep_tokens(b)
    if keep is not None and keep > 0:
        request.pair_tokens = keep
    return request


TEXT_2 = one_of(NONEMPTY_STRING, STRINGS)


class VllmScore(Codec[None]):
    """vLLM's ``/score``: one query (``text_1``) against one text or many (``text_2``)."""

    name = "score"
    path = "/score"
    kind = RERANK
    summary = "Score: vLLM's score API, text_1 against each text_2, over the rerank models"
    fields = FieldTable((
        Field("model", NONEMPTY_STRING, "the rerank model alias", required=True),
        Field("text_1", TEXT_2, "the query: a string, or a list of one (or of one text repeated)", required=True),
        Field("text_2", TEXT_2, "the texts scored against text_1: a string or strings", required=True),
        RERANK_TRUNCATE, *ACTIVATION, PRIORITY, REQUEST_ID,
    ), exclusive=RERANK_EXCLUSIVE[:3])
    response_schema = {"type": "object", "required": ["object", "data", "model", "usage"],
                       "properties": {"id": STRING, "object": {"const": "list"}, "created": {"type": "integer"},
                                      "model": STRING, "usage": {"type": "object"},
                                      "data": {"type": "array", "items": {
                                          "type": "object", "required": ["index", "object", "score"],
                                          "properties": {"index": {"type": "integer"}, "object": {"const": "score"},
                                                         "score": {"type": "number"}}}}}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        b = self.fields.read(body, self.path)
        text_1, text_2 = b["text_1"], b["text_2"]
        queries = [text_1] if isinstance(text_1, str) else list(text_1)
        if len(set(queries)) != 1:
            raise InvalidRequest("'text_1' holds different texts; one query a request is served (a string, or a "
                                 "list of one), scored against every text_2", param="text_1",
                                 code="unsupported_parameter")
        texts = [text_2] if isinstance(text_2, str) else list(text_2)
        if len(queries) > 1 and len(queries) != len(texts):
            raise InvalidRequest(f"'text_1' has {len(queries)} items and 'text_2' {len(texts)}: lists of one length, "
                                 "or one text_1", param="text_1")
        count_items(len(texts), limits, "text_2")
        request = RerankRequest(model=b.get("model"), query=queries[0], documents=texts, return_documents=False,
                                every_score=True)
        return Parsed(rerank_extras(request, b))

    def render(self, request: RerankRequest, state: None, outcome: RerankOutcome) -> Any:
        data = [{"index": i, "object": "score", "score": score} for i, score in sorted(outcome.ranked)]
        return {"id": f"score-{response_id()}", "object": "list", "created": int(time.time()), "model": outcome.model,
                "data": data, "usage": {"prompt_tokens": outcome.tokens, "total_tokens": outcome.tokens,
                                        "completion_tokens": 0}}


class VllmScoreV1(VllmScore):
    name = "scoreV1"
    path = "/v1/score"
