"""``/v1/embeddings`` and ``/v1/rerank``: OpenAI's embeddings body with Voyage's and Jina's fields
beside it, and the guide's rerank body that Cohere v1, Jina and Voyage clients also read.

Voyage and Jina call the same paths as OpenAI, so their documented fields are part of this
table: ``input_type``/``task`` select the route's prompt, ``output_dimension`` is
``dimensions``, ``output_dtype``/``embedding_type`` pick a quantised output computed here,
``truncation``/``truncate`` say what may happen to an over-long input. A field that would be
accepted and ignored is refused instead.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from core.dialects.base import Codec, Parsed, ParseLimits, count_items, response_id
from core.dialects.fields import (
    BOOLEAN,
    NONEMPTY_STRING,
    POSITIVE_INT,
    STRING,
    STRINGS,
    TEXT_OBJECT,
    Field,
    FieldTable,
    enum,
    one_of,
    texts_of,
)
from core.dialects.quantize import as_base64, json_rows, quantize
from core.dialects.units import rerank_meta
from core.dialects.vllm import (
    EMBED_EXCLUSIVE,
    EMBED_EXTRAS,
    EMBED_NAMES,
    RERANK_EXCLUSIVE,
    RERANK_EXTRAS,
    RERANK_NAMES,
    embed_extras,
    rerank_extras,
)
from core.kinds import EMBEDDINGS, RERANK
from core.requests import CUT_END, REFUSE, EmbeddingsOutcome, EmbeddingsRequest, RerankOutcome, RerankRequest
from core.vectors import FLOAT32, normalise

TOKEN_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, "minItems": 1}
EMBED_INPUT = one_of(NONEMPTY_STRING, STRINGS, TOKEN_IDS,
                     {"type": "array", "items": TOKEN_IDS, "minItems": 1},
                     {"type": "array", "items": TEXT_OBJECT, "minItems": 1})
WIDTH = {"type": "integer", "minimum": 0}
VOYAGE_INPUT_TYPES = {"query": "query", "document": "document"}
JINA_TASKS = {"retrieval.query": "query", "retrieval.passage": "document", "classification": "classification",
              "separation": "clustering"}


class VectorOutput(NamedTuple):  # immutable, and quicker to make than a frozen dataclass
    """How a body asked for its vectors: OpenAI's encoding, Voyage's/Jina's output type, Jina's
    ``normalized``."""

    encoding: str = "float"  # float or base64
    dtype: str = "float"  # float, int8, uint8, binary, ubinary
    normalize: bool = False


class OpenAIEmbeddings(Codec[VectorOutput]):
    name = "createEmbeddings"
    path = "/v1/embeddings"
    kind = EMBEDDINGS
    summary = "Embeddings: OpenAI's body, with Voyage's and Jina's fields"
    fields = FieldTable((
        Field("model", NONEMPTY_STRING, "the model alias", required=True),
        Field("input", EMBED_INPUT, "a string, strings, token ids, lists of token ids (or Jina's {text} objects)",
              required=True),
        Field("encoding_format", enum("float", "base64"), "base64: little-endian bytes of each vector"),
        Field("dimensions", WIDTH, "truncate to this many dimensions and renormalise (0: the model's own, "
                                   "as Infinity's client sends by default)"),
        Field("user", STRING, "the end user, for the caller's own records"),
        Field("input_type", enum(*VOYAGE_INPUT_TYPES), "Voyage: selects the route's prompt"),
        Field("truncation", BOOLEAN, "Voyage: true lets an over-long input be cut at the end; false refuses it"),
        Field("output_dimension", POSITIVE_INT, "Voyage: the same as dimensions"),
        Field("output_dtype", enum("float", "int8", "uint8", "binary", "ubinary"), "Voyage: quantised output"),
        Field("task", enum(*JINA_TASKS), "Jina: selects the route's prompt"),
        Field("embedding_type", enum("float", "base64", "binary", "ubinary"), "Jina: output type"),
        Field("normalized", {"const": True}, "Jina: unit-length vectors (only true is served)"),
        Field("late_chunking", {"const": False}, "Jina: late chunking is not served (only false)"),
        Field("truncate", BOOLEAN, "Jina: true lets an over-long input be cut at the end; false refuses it"),
        *EMBED_EXTRAS,
    ), exclusive=(("dimensions", "output_dimension"), ("input_type", "task"), ("output_dtype", "embedding_type"),
                  ("truncation", "truncate"), *EMBED_EXCLUSIVE))
    response_schema = {"type": "object", "required": ["object", "data", "model", "usage"],
                       "properties": {"object": {"const": "list"}, "data": {"type": "array"},
                                      "model": STRING, "usage": {"type": "object"}}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[VectorOutput]:
        b = self.fields.read(body, self.path)
        raw = b.get("input")
        is_tokens = False
        if isinstance(raw, str):
            inputs: list[Any] = [raw]
        elif isinstance(raw[0], (int, float)):  # the schema let through whole numbers only
            inputs, is_tokens = [[int(t) for t in raw]], True
        elif isinstance(raw[0], list):
            inputs, is_tokens = [[int(t) for t in ids] for ids in raw], True
        else:
            inputs = texts_of(raw)
        count_items(len(inputs), limits, "input")
        input_type = VOYAGE_INPUT_TYPES.get(b.get("input_type")) or JINA_TASKS.get(b.get("task"))
        cut = b.get("truncation", b.get("truncate"))
        dtype = b.get("output_dtype") or b.get("embedding_type") or "float"
        encoding = b.get("encoding_format") or "float"
        if dtype == "base64":  # Jina's name for base64 floats
            dtype, encoding = "float", "base64"
        # vLLM's and Infinity's fields (truncate_prompt_tokens -1 is a truncation choice too, exclusive with cut)
        extras = embed_extras(b) if EMBED_NAMES & b.keys() else {}
        truncation = extras.pop("truncation", None if cut is None else (CUT_END if cut else REFUSE))
        normalized = b.get("normalized") is True  # a request-level field (core.space.REQUEST_FIELDS) when set
        request = EmbeddingsRequest(model=b.get("model"), inputs=inputs, is_tokens=is_tokens,
                                    dimensions=b.get("dimensions", b.get("output_dimension")) or None,
                                    user=b.get("user"), input_type=input_type, truncation=truncation,
                                    outputs=(dtype,), fields={"normalized": True} if normalized else {}, **extras)
        return Parsed(request, VectorOutput(encoding, dtype, normalized))

    def render(self, request: EmbeddingsRequest, state: VectorOutput | None, outcome: EmbeddingsOutcome) -> Any:
        out = state or VectorOutput()
        vectors = normalise(outcome.vectors) if out.normalize else outcome.vectors
        # float32 floats, the common answer, are already what quantize would give
        array = vectors if out.dtype == "float" and vectors.dtype is FLOAT32 else quantize(vectors, out.dtype)
        rows = as_base64(array) if out.encoding == "base64" else json_rows(array)
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
        return {"object": "list", "data": data, "model": outcome.model,
                "usage": {"prompt_tokens": outcome.tokens, "total_tokens": outcome.tokens}}


class InfinityEmbeddings(OpenAIEmbeddings):
    """``/embeddings``: the same body at Infinity's unprefixed path (LiteLLM's infinity/ provider)."""

    name = "createEmbeddingsUnprefixed"
    path = "/embeddings"
    summary = "Embeddings: the OpenAI body at Infinity's unprefixed path"


RERANK_DOCUMENTS = {"type": "array", "items": one_of(NONEMPTY_STRING, TEXT_OBJECT), "minItems": 1}
#: What every rerank body has, whatever its dialect calls the rest.
RERANK_FIELDS = (
    Field("model", NONEMPTY_STRING, "the model alias", required=True),
    Field("query", NONEMPTY_STRING, "the query", required=True),
    Field("documents", RERANK_DOCUMENTS, "strings or {text} objects", required=True),
    Field("top_n", {"type": "integer", "minimum": 0}, "how many results, best first (capped by the model's max_top_k; "
                                                      "0: all, as vLLM reads it)"),
    Field("return_documents", BOOLEAN, "put each document's text in its result"),
)


class GuideRerank(Codec[None]):
    """One body for the guide, Cohere v1, Jina and Voyage: each finds the fields it reads."""

    name = "rerank"
    path = "/v1/rerank"
    kind = RERANK
    summary = "Rerank: the guide's body (Cohere v1, Jina and Voyage clients read the answer too)"
    fields = FieldTable((
        *RERANK_FIELDS,
        Field("top_k", POSITIVE_INT, "the guide's (and Voyage's) name for top_n"),
        Field("truncation", BOOLEAN, "Voyage: true lets an over-long document be cut; false refuses it"),
        *RERANK_EXTRAS,
    ), exclusive=RERANK_EXCLUSIVE)
    response_schema = {"type": "object", "required": ["model", "results", "usage"],
                       "properties": {"id": STRING, "model": STRING, "results": {"type": "array"},
                                      "data": {"type": "array"}, "meta": {"type": "object"},
                                      "usage": {"type": "object"}}}

    def parse(self, body: Any, limits: ParseLimits) -> Parsed[None]:
        return Parsed(parse_rerank_body(self.fields, self.path, body, limits))

    def render(self, request: RerankRequest, state: None, outcome: RerankOutcome) -> Any:
        results, data = [], []
        for index, score in outcome.ranked:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            voyage = dict(item)
            if request.return_documents:
                item["document"] = {"text": outcome.documents[index]}
                voyage["document"] = outcome.documents[index]
            results.append(item)
            data.append(voyage)
        usage = {"prompt_tokens": outcome.tokens, "total_tokens": outcome.tokens}
        return {"id": response_id(), "object": "rerank", "model": outcome.model, "results": results, "data": data,
                "meta": rerank_meta("1", outcome), "usage": usage}


def parse_rerank_body(fields: FieldTable, path: str, body: Any, limits: ParseLimits) -> RerankRequest:
    b = fields.read(body, path)
    documents = texts_of(b.get("documents"))
    count_items(len(documents), limits, "documents")
    top_n = b.get("top_n", b.get("top_k")) or None  # vLLM's 0: every result
    cut = b.get("truncation")
    request = RerankRequest(model=b.get("model"), query=b.get("query"), documents=documents, top_n=top_n,
                            return_documents=b.get("return_documents"),  # None: the route's default
                            truncation=None if cut is None else (CUT_END if cut else REFUSE),
                            per_document_usage=True)  # the answer's search units count each document
    # vLLM's and Infinity's fields, where the table has them and the body sends one
    return rerank_extras(request, b) if RERANK_NAMES & b.keys() else request
