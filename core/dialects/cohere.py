"""Cohere's API: ``/v1/embed``, ``/v2/embed`` and ``/v2/rerank`` (its v1 rerank is ``/v1/rerank``).

Errors on these paths are Cohere-shaped (``{"message": ...}``), which its SDKs read. The
quantised embedding types are computed here from the float vector (``core.dialects.quantize``).
``input_type`` selects the route's prompt; ``truncate`` END (Cohere's default) lets an
over-long input be cut at the end, NONE refuses it, START is not served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.dialects.base import Codec, Parsed, ParseLimits, count_items, response_id
from core.dialects.fields import NONEMPTY_STRING, POSITIVE_INT, STRING, STRINGS, Field, FieldTable, enum
from core.dialects.openai import RERANK_FIELDS, parse_rerank_body
from core.dialects.quantize import as_base64, json_rows, quantize
from core.dialects.units import rerank_meta
from core.errors import GatewayError
from core.kinds import EMBEDDINGS, RERANK
from core.requests import CUT_END, REFUSE, EmbeddingsOutcome, EmbeddingsRequest, RerankOutcome, RerankRequest

INPUT_TYPES = {"search_query": "query", "search_document": "document", "classification": "classification",
               "clustering": "clustering"}
TRUNCATE = {"END": CUT_END, "NONE": REFUSE}  # START (cut the beginning) is not served
V1_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
V2_TYPES = (*V1_TYPES, "base64")


def _embed_fields(version: int) -> FieldTable:
    types = V2_TYPES if version == 2 else V1_TYPES
    fields = [
        Field("model", NONEMPTY_STRING, "the model alias", required=version == 2),
        Field("texts", STRINGS, "the texts to embed", required=True),
        Field("input_type", enum(*INPUT_TYPES), "selects the route's prompt (image is not served)"),
        Field("embedding_types", {"type": "array", "items": enum(*types), "minItems": 1},
              "the output types; base64 (v2) is float32, little-endian"),
        Field("truncate", enum(*TRUNCATE), "END (default): cut an over-long input at the end; NONE: refuse it; "
                                           "START is not served"),
        Field("images", {"type": "array", "items": STRING, "maxItems": 0}, "image embeddings are not served"),
    ]
    if version == 2:
        fields += [Field("output_dimension", POSITIVE_INT, "truncate to this many dimensions and renormalise")]
    return FieldTable(tuple(fields))


class CohereErrors:
    """Cohere's SDKs read an error as ``{"message"}``."""

    error_schema = ("CohereError", {"type": "object", "required": ["message"],
                                    "properties": {"message": {"type": "string"}}})

    def render_error(self, error: GatewayError) -> Any:
        return {"message": error.message}


@dataclass(frozen=True, slots=True)
class CohereOutput:
    """The output types asked for (``embedding_types``), whether the answer is by type (always
    in v2), and the texts Cohere echoes back."""

    types: tuple[str, ...]
    by_type: bool
    texts: tuple[str, ...]


class CohereEmbedV1(CohereErrors, Codec[CohereOutput]):
    version = 1
    name = "cohereEmbedV1"
    path = "/v1/embed"
    kind = EMBEDDINGS
    summary = "Embeddings: Cohere's v1 body"
    fields = _embed_fields(1)

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[CohereOutput]:
        b = self.fields.read(body, self.path)
        texts = b.get("texts")
        count_items(len(texts), limits, "texts")
        input_type = INPUT_TYPES.get(b.get("input_type"))
        truncation = TRUNCATE[b.get("truncate", "END")]
        types = b.get("embedding_types")
        by_type = types is not None or self.version == 2
        outputs = tuple(dict.fromkeys(types or ["float"]))
        request = EmbeddingsRequest(model=b.get("model"), inputs=list(texts), is_tokens=False,
                                    dimensions=b.get("output_dimension"), input_type=input_type,
                                    truncation=truncation, outputs=outputs if by_type else ("float",))
        return Parsed(request, CohereOutput(outputs, by_type, tuple(texts)))

    def render(self, request: EmbeddingsRequest, state: CohereOutput | None, outcome: EmbeddingsOutcome) -> Any:
        out = state or CohereOutput(("float",), self.version == 2, ())
        meta = {"api_version": {"version": str(self.version)}, "billed_units": {"input_tokens": outcome.tokens}}
        body: dict[str, Any] = {"id": response_id(), "texts": list(out.texts), "meta": meta}
        if not out.by_type:
            body.update(embeddings=json_rows(outcome.vectors), response_type="embeddings_floats")
            return body
        embeddings: dict[str, Any] = {}
        for kind in out.types:
            if kind == "base64":
                embeddings[kind] = as_base64(quantize(outcome.vectors, "float"))
            else:
                embeddings[kind] = json_rows(quantize(outcome.vectors, kind))
        body.update(embeddings=embeddings, response_type="embeddings_by_type")
        return body


class CohereEmbedV2(CohereEmbedV1):
    version = 2
    name = "cohereEmbedV2"
    path = "/v2/embed"
    summary = "Embeddings: Cohere's v2 body"
    fields = _embed_fields(2)


class CohereRerankV2(CohereErrors, Codec[None]):
    name = "cohereRerankV2"
    path = "/v2/rerank"
    kind = RERANK
    summary = "Rerank: Cohere's v2 body"
    fields = FieldTable((
        *RERANK_FIELDS,
        Field("max_tokens_per_doc", POSITIVE_INT, "each document is read up to this many tokens (default 4096)"),
    ))

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        request = parse_rerank_body(self.fields, self.path, body, limits)
        request.max_tokens_per_doc = body.get("max_tokens_per_doc")  # checked by the field table
        return Parsed(request)

    def render(self, request: RerankRequest, state: None, outcome: RerankOutcome) -> Any:
        results = []
        for index, score in outcome.ranked:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if request.return_documents:
                item["document"] = {"text": outcome.documents[index]}
            results.append(item)
        return {"id": response_id(), "results": results, "meta": rerank_meta("2", outcome)}

