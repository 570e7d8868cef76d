"""Every client library, unmodified, at its documented custom-base-URL setting, against a live router.

Run inside the SDK venv (``.venv-sdk``, made by ``scripts/bootstrap.sh test``), not the router's:
the SDKs' pins clash with the gateway's and with each other (``.venv-sdk-cohere7`` holds Cohere's
7.x SDK, which langchain-cohere does not allow beside it; ``MAAS_CONFORMANCE_ONLY=cohere`` runs
its checks alone). Usage::

    clients.py ROUTER_URL API_KEY LIMITED_KEY

Prints one JSON line a check: ``{"client", "call", "ok", "detail"}``. A check passes only when the
data is right, not merely when the call returns: vectors are compared with the plain OpenAI
float answer for the same text, ranks with the guide's /v1/rerank answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable

import httpx
import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
warnings.filterwarnings("ignore")

URL, KEY, LIMITED = sys.argv[1], sys.argv[2], sys.argv[3]
V1 = URL + "/v1"
EMB, RR = "minilm", "rerank-base"
TEXTS = ["The cat sat on the mat.", "Berlin is the capital of Germany."]
QUERY = "What is the capital of Germany?"
DOCS = ["Paris is in France.", "Berlin is the capital of Germany.", "Cats sleep a lot."]
CHECKS: list[tuple[str, str, Callable[[], str]]] = []


def check(client: str, call: str):
    def register(fn: Callable[[], str]) -> Callable[[], str]:
        CHECKS.append((client, call, fn))
        return fn
    return register


def _reference() -> np.ndarray:
    body = httpx.post(V1 + "/embeddings", json={"model": EMB, "input": TEXTS, "encoding_format": "float"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


REF = _reference()
_RANKED = httpx.post(V1 + "/rerank", json={"model": RR, "query": QUERY, "documents": DOCS},
                     headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()["results"]
REF_ORDER = [r["index"] for r in _RANKED]
REF_SCORES = [next(r["relevance_score"] for r in _RANKED if r["index"] == i) for i in range(len(DOCS))]


def same_vectors(got, want: np.ndarray = REF, atol: float = 1e-5) -> str:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == want.shape, f"shape {got.shape}, want {want.shape}"
    np.testing.assert_allclose(got, want, atol=atol)
    return f"{got.shape[0]}x{got.shape[1]} equal to the float answer"


def same_order(indices) -> str:
    assert list(indices) == REF_ORDER, f"order {list(indices)}, want {REF_ORDER}"
    return f"order {REF_ORDER}"


# --- openai ---------------------------------------------------------------------------------------
def _openai(key: str = KEY, **kw):
    from openai import OpenAI
    return OpenAI(base_url=V1, api_key=key, **kw)


@check("openai", "embeddings.create (default: base64)")
def _():
    return same_vectors([d.embedding for d in _openai().embeddings.create(model=EMB, input=TEXTS).data])


@check("openai", "embeddings.create float")
def _():
    data = _openai().embeddings.create(model=EMB, input=TEXTS, encoding_format="float").data
    return same_vectors([d.embedding for d in data])


@check("openai", "embeddings.create dimensions=128")
def _():
    row = np.array(_openai().embeddings.create(model=EMB, input=TEXTS[0], dimensions=128).data[0].embedding)
    want = REF[0, :128] / np.linalg.norm(REF[0, :128])
    return same_vectors([row], want[None, :])


@check("openai", "AsyncOpenAI embeddings.create")
def _():
    from openai import AsyncOpenAI

    async def run():
        async with AsyncOpenAI(base_url=V1, api_key=KEY) as client:
            return await client.embeddings.create(model=EMB, input=TEXTS)
    return same_vectors([d.embedding for d in asyncio.run(run()).data])


@check("openai", "with_raw_response")
def _():
    raw = _openai().embeddings.with_raw_response.create(model=EMB, input="x")
    assert raw.headers.get("x-request-id"), "no X-Request-ID"
    return f"X-Request-ID present, {len(raw.parse().data[0].embedding)} dims"


@check("openai", "models.list / models.retrieve")
def _():
    client = _openai()
    ids = sorted(m.id for m in client.models.list())
    model = client.models.retrieve(EMB)
    assert EMB in ids and model.id == EMB, (ids, model)
    return f"{len(ids)} models; retrieve {model.id}"


@check("openai", "errors: unknown model, bad key")
def _():
    import openai
    try:
        _openai().embeddings.create(model="no-such-model", input="x")
        raise AssertionError("no error")
    except openai.NotFoundError:
        pass
    try:
        _openai(key="wrong-key", max_retries=0).embeddings.create(model=EMB, input="x")
        raise AssertionError("no error")
    except openai.AuthenticationError:
        pass
    return "NotFoundError, AuthenticationError"


@check("openai", "429 retried by the SDK")
def _():
    client = _openai(key=LIMITED, max_retries=4)
    for _ in range(3):  # the bucket holds 1: the SDK waits as retry-after-ms says and succeeds
        client.embeddings.create(model=EMB, input="x")
    return "3 calls on a 1-request bucket succeeded through retries"


# --- langchain, llama-index, haystack ---------------------------------------------------------------
@check("langchain-openai", "OpenAIEmbeddings (text mode)")
def _():
    from langchain_openai import OpenAIEmbeddings
    emb = OpenAIEmbeddings(model=EMB, base_url=V1, api_key=KEY, check_embedding_ctx_length=False)
    same_vectors([emb.embed_query(TEXTS[0])], REF[:1])
    return same_vectors(emb.embed_documents(TEXTS))


@check("langchain-openai", "OpenAIEmbeddings (default mode: cl100k token ids)")
def _():
    from langchain_openai import OpenAIEmbeddings
    emb = OpenAIEmbeddings(model=EMB, base_url=V1, api_key=KEY, tiktoken_model_name="text-embedding-3-small")
    got = np.asarray(emb.embed_documents(TEXTS), dtype=np.float32)
    cosine = np.sum(got * REF, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(REF, axis=1))
    assert cosine.min() >= 0.999, cosine
    return f"cosine to text mode >= {cosine.min():.6f}"


@check("llama-index", "OpenAILikeEmbedding")
def _():
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding
    emb = OpenAILikeEmbedding(model_name=EMB, api_base=V1, api_key=KEY)
    return same_vectors(emb.get_text_embedding_batch(TEXTS))


@check("llama-index", "OpenAIEmbedding")
def _():
    from llama_index.embeddings.openai import OpenAIEmbedding
    emb = OpenAIEmbedding(model_name=EMB, api_base=V1, api_key=KEY)
    return same_vectors(emb.get_text_embedding_batch(TEXTS))


@check("haystack", "OpenAITextEmbedder / OpenAIDocumentEmbedder")
def _():
    from haystack import Document
    from haystack.components.embedders import OpenAIDocumentEmbedder, OpenAITextEmbedder
    from haystack.utils import Secret
    text = OpenAITextEmbedder(api_key=Secret.from_token(KEY), model=EMB, api_base_url=V1).run(text=TEXTS[0])
    same_vectors([text["embedding"]], REF[:1])
    docs = OpenAIDocumentEmbedder(api_key=Secret.from_token(KEY), model=EMB, api_base_url=V1,
                                  progress_bar=False).run(documents=[Document(content=t) for t in TEXTS])
    return same_vectors([d.embedding for d in docs["documents"]])


# --- cohere -----------------------------------------------------------------------------------------
@check("cohere", "Client.embed (floats, and every embedding type)")
def _():
    import cohere
    client = cohere.Client(api_key=KEY, base_url=URL)
    floats = client.embed(texts=TEXTS, model=EMB, input_type="search_document").embeddings
    same_vectors(floats)
    typed = client.embed(texts=TEXTS, model=EMB, input_type="search_query",
                         embedding_types=["float", "int8", "uint8", "binary", "ubinary"]).embeddings
    same_vectors(typed.float_)
    assert np.asarray(typed.int8).shape == REF.shape and np.asarray(typed.ubinary).shape == (2, REF.shape[1] // 8)
    return "floats equal; int8, uint8, binary, ubinary of the right widths"


@check("cohere", "ClientV2.embed (every embedding type)")
def _():
    import cohere
    client = cohere.ClientV2(api_key=KEY, base_url=URL)
    out = client.embed(texts=TEXTS, model=EMB, input_type="search_document",
                       embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"]).embeddings
    same_vectors(out.float_)
    decoded = [np.frombuffer(base64.b64decode(s), "<f4") for s in out.base64]
    same_vectors(decoded)
    return "float and base64 equal; quantised types present"


@check("cohere", "Client.rerank / ClientV2.rerank")
def _():
    import cohere
    v1 = cohere.Client(api_key=KEY, base_url=URL).rerank(query=QUERY, documents=DOCS, model=RR, top_n=3)
    same_order([r.index for r in v1.results])
    v2 = cohere.ClientV2(api_key=KEY, base_url=URL).rerank(query=QUERY, documents=DOCS, model=RR, top_n=3)
    return same_order([r.index for r in v2.results])


@check("langchain-cohere", "CohereEmbeddings / CohereRerank")
def _():
    from langchain_cohere import CohereEmbeddings, CohereRerank
    from langchain_core.documents import Document
    emb = CohereEmbeddings(model=EMB, cohere_api_key=KEY, base_url=URL)
    same_vectors(emb.embed_documents(TEXTS))
    ranked = CohereRerank(model=RR, cohere_api_key=KEY, base_url=URL, top_n=3).compress_documents(
        [Document(page_content=d) for d in DOCS], QUERY)
    return same_order([DOCS.index(d.page_content) for d in ranked])


# --- voyage -----------------------------------------------------------------------------------------
def _voyage():
    import voyageai
    return voyageai.Client(api_key=KEY, base_url=V1)


@check("voyageai", "embed (float, output_dimension, int8, binary)")
def _():
    client = _voyage()
    same_vectors(client.embed(TEXTS, model=EMB, input_type="document").embeddings)
    short = np.asarray(client.embed(TEXTS, model=EMB, output_dimension=128).embeddings)
    assert short.shape == (2, 128), short.shape
    ints = np.asarray(client.embed(TEXTS, model=EMB, output_dtype="int8").embeddings)
    assert ints.shape == REF.shape and np.abs(ints).max() == 127, ints.shape
    bits = np.asarray(client.embed(TEXTS, model=EMB, output_dtype="ubinary").embeddings)
    assert bits.shape == (2, REF.shape[1] // 8)
    return "float equal; 128 dims; 384 int8 values; 48 ubinary bytes"


@check("voyageai", "rerank")
def _():
    result = _voyage().rerank(QUERY, DOCS, model=RR, top_k=3)
    return same_order([r.index for r in result.results])


# --- litellm ----------------------------------------------------------------------------------------
def _litellm_embed(model: str, base: str, **extra) -> str:
    import litellm
    out = litellm.embedding(model=model, input=TEXTS, api_base=base, api_key=KEY, **extra)
    return same_vectors([d["embedding"] for d in out.data])


def _litellm_rerank(model: str, base: str) -> str:
    import litellm
    out = litellm.rerank(model=model, query=QUERY, documents=DOCS, api_base=base, api_key=KEY, top_n=3,
                         return_documents=False)
    return same_order([r["index"] for r in out.results])


for _name, _base in (("openai", V1), ("hosted_vllm", V1), ("infinity", URL)):
    check("litellm", f"embedding {_name}/")(lambda n=_name, b=_base: _litellm_embed(f"{n}/{EMB}", b))
# TEI: LiteLLM posts to api_base itself; without input_type it asks the Hugging Face Hub for the task first.
check("litellm", "embedding huggingface/ (TEI /embed)")(
    lambda: _litellm_embed(f"huggingface/{EMB}", URL + "/embed", input_type="feature-extraction"))
for _name, _base in (("cohere", URL), ("jina_ai", V1), ("hosted_vllm", URL), ("huggingface", URL),
                     ("infinity", URL)):
    check("litellm", f"rerank {_name}/")(lambda n=_name, b=_base: _litellm_rerank(f"{n}/{RR}", b))


# --- vLLM's clients: its OpenAI-compatible embeddings (the openai SDK with extra_body, as vLLM's
# examples), and raw requests shaped as its score and rerank examples send them, on aliases set up
# for vLLM users: token ids in the model's vocabulary, documents returned by default ------------------
VLLM = "vLLM-style requests"
EMB_VLLM, RR_VLLM = "minilm-vllm", "rerank-vllm"


def _post(path: str, body: dict) -> dict:
    resp = httpx.post(URL + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


@check(VLLM, "embeddings.create + extra_body (truncate_prompt_tokens, normalize, add_special_tokens)")
def _():
    out = _openai().embeddings.create(model=EMB_VLLM, input=TEXTS, encoding_format="float", extra_body={
        "truncate_prompt_tokens": 128, "normalize": True, "add_special_tokens": True, "priority": 0})
    raw = _openai().embeddings.create(model=EMB_VLLM, input=TEXTS[:1], encoding_format="float",
                                      extra_body={"normalize": False})
    vector = np.asarray(raw.data[0].embedding, dtype=np.float32)
    np.testing.assert_allclose(vector / np.linalg.norm(vector), REF[0], atol=1e-5)
    assert abs(np.linalg.norm(vector) - 1) > 0.1, "normalize=false gave a unit vector"
    return same_vectors([d.embedding for d in out.data]) + "; normalize=false the pooled vector"


@check(VLLM, "embeddings of the model's own token ids (no marker)")
def _():
    ids = [[t["id"] for t in row] for row in _post("/tokenize", {"model": EMB, "inputs": TEXTS})]
    out = _openai().embeddings.create(model=EMB_VLLM, input=ids, encoding_format="float")
    return same_vectors([d.embedding for d in out.data]) + " (the texts' vectors)"


@check(VLLM, "POST /score, /v1/score (text_1 against text_2)")
def _():
    for path in ("/score", "/v1/score"):
        body = _post(path, {"model": RR_VLLM, "text_1": QUERY, "text_2": DOCS})
        got = [d["score"] for d in sorted(body["data"], key=lambda d: d["index"])]
        assert got == REF_SCORES, (got, REF_SCORES)
        assert body["object"] == "list" and body["usage"]["total_tokens"] > 0
    one = _post("/v1/score", {"model": RR_VLLM, "text_1": QUERY, "text_2": DOCS[1]})
    assert [d["score"] for d in one["data"]] == [REF_SCORES[1]]
    return f"{len(DOCS)} scores equal to the rerank relevance scores; one to one too"


@check(VLLM, "POST /v1/rerank (documents by default, activation)")
def _():
    body = _post("/v1/rerank", {"model": RR_VLLM, "query": QUERY, "documents": DOCS, "top_n": 3})
    results = body["results"]
    assert [r["document"]["text"] for r in results] == [DOCS[r["index"]] for r in results]
    assert [r["relevance_score"] for r in results] == [REF_SCORES[r["index"]] for r in results]
    logits = _post("/v1/rerank", {"model": RR_VLLM, "query": QUERY, "documents": DOCS, "activation": False})
    for r in logits["results"]:
        assert abs(1 / (1 + np.exp(-r["relevance_score"])) - REF_SCORES[r["index"]]) < 1e-6
    return same_order([r["index"] for r in results]) + "; documents returned; logits with activation=false"


# --- infinity_client: Infinity's generated SDK (it sends modality, dimensions 0, encoding_format) -----
def _infinity():
    from infinity_client import AuthenticatedClient
    return AuthenticatedClient(base_url=URL, token=KEY, raise_on_unexpected_status=True)


@check("infinity_client", "embeddings (OpenAIEmbeddingInputText)")
def _():
    from infinity_client.api.default import embeddings
    from infinity_client.models import OpenAIEmbeddingInputText
    out = embeddings.sync(client=_infinity(), body=OpenAIEmbeddingInputText(input_=TEXTS, model=EMB))
    return same_vectors([d.embedding for d in out.data])


@check("infinity_client", "rerank (RerankInput, return_documents, raw_scores)")
def _():
    from infinity_client.api.default import rerank
    from infinity_client.models import RerankInput
    body = RerankInput(query=QUERY, documents=DOCS, model=RR, return_documents=True)
    out = rerank.sync(client=_infinity(), body=body)
    assert [r.relevance_score for r in out.results] == [REF_SCORES[r.index] for r in out.results]
    # the document comes as {"text": ...} (Cohere's, Jina's and vLLM's shape), not Infinity's bare string
    assert [r.document["text"] for r in out.results] == [DOCS[r.index] for r in out.results]
    raw = rerank.sync(client=_infinity(), body=RerankInput(query=QUERY, documents=DOCS, model=RR, raw_scores=True))
    assert all(abs(1 / (1 + np.exp(-r.relevance_score)) - REF_SCORES[r.index]) < 1e-6 for r in raw.results)
    return same_order([r.index for r in out.results]) + "; documents as {text}; raw_scores the logits"


DISTRIBUTIONS = {"llama-index": "llama-index-embeddings-openai", "haystack": "haystack-ai"}
RAW = {VLLM}  # no SDK of their own: requests shaped as their clients send them, with httpx and openai


def _named(client: str) -> str:
    """The client with the version this venv has: the table says which release was checked."""
    from importlib.metadata import version
    if client in RAW:
        return f"{client} (httpx {version('httpx')}, openai {version('openai')})"
    return f"{client} {version(DISTRIBUTIONS.get(client, client))}"


def main() -> None:
    only = set(os.environ.get("MAAS_CONFORMANCE_ONLY", "").split(",")) - {""}
    for client, call, fn in CHECKS:
        if only and client not in only:
            continue
        try:
            row = {"client": _named(client), "call": call, "ok": True, "detail": fn()}
        except Exception as exc:  # a failing client is a row, not the end of the run
            detail = f"{type(exc).__name__}: {exc}"[:400]
            row = {"client": client, "call": call, "ok": False, "detail": detail,
                   "trace": traceback.format_exc()[-1500:]}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
