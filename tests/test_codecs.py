"""The codecs' parsing edge cases and response shaping, without a server."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from core.dialects import ParseLimits
from core.dialects.openai import GuideRerank, OpenAIEmbeddings
from core.errors import InvalidRequest
from core.requests import EmbeddingsOutcome, RerankOutcome, rank
from core.vectors import shape_vectors


def parse_embeddings(body, max_inputs):
    return OpenAIEmbeddings().parse(body, ParseLimits(max_inputs=max_inputs)).request


def parse_rerank(body, max_inputs):
    return GuideRerank().parse(body, ParseLimits(max_inputs=max_inputs)).request


def test_token_arrays_are_recognised():
    single = parse_embeddings({"model": "m", "input": [1, 2, 3]}, max_inputs=10)
    assert single.is_tokens and single.inputs == [[1, 2, 3]]
    many = parse_embeddings({"model": "m", "input": [[1], [2, 3]]}, max_inputs=10)
    assert many.is_tokens and many.inputs == [[1], [2, 3]]
    assert parse_embeddings({"model": "m", "input": "x"}, max_inputs=1).inputs == ["x"]


def test_booleans_are_not_token_ids_or_dimensions():
    with pytest.raises(InvalidRequest):
        parse_embeddings({"model": "m", "input": [True, False]}, max_inputs=10)
    with pytest.raises(InvalidRequest) as info:
        parse_embeddings({"model": "m", "input": "x", "dimensions": True}, max_inputs=10)
    assert info.value.param == "dimensions"


def test_top_n_wins_over_top_k_and_documents_may_be_objects():
    req = parse_rerank({"model": "m", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1, "top_k": 5},
                       max_inputs=10)
    assert req.top_n == 1 and req.documents == ["a", "b"]


def test_shape_vectors_truncates_and_renormalises():
    v = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    out = shape_vectors(v, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_array_equal(shape_vectors(v, None), v)  # no dimensions: untouched
    np.testing.assert_array_equal(shape_vectors(v, 3), v)  # as many as the model has: untouched


def test_base64_is_little_endian_float32():
    v = np.array([[1.5, -2.25]], dtype=np.float32)
    codec = OpenAIEmbeddings()
    parsed = codec.parse({"model": "m", "input": "x", "encoding_format": "base64"}, ParseLimits(max_inputs=1))
    body = codec.render(parsed.request, parsed.state, EmbeddingsOutcome("m", v, 7))
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert raw == np.array([1.5, -2.25], dtype="<f4").tobytes()
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_rerank_body_sorts_and_cuts():
    req = parse_rerank({"model": "m", "query": "q", "documents": ["a", "b", "c"], "return_documents": True},
                       max_inputs=10)
    body = GuideRerank().render(req, None, RerankOutcome("m", rank([0.1, 0.9, 0.5], 2), req.documents, 3))
    assert [r["index"] for r in body["results"]] == [1, 2]
    assert body["results"][0]["document"] == {"text": "b"}
    assert body["data"][0]["document"] == "b"  # Voyage reads data, with the text as a string
    assert rank([0.5, 0.5, 0.9], None) == [(2, 0.9), (0, 0.5), (1, 0.5)]  # ties keep document order


def test_a_null_top_n_falls_back_to_top_k():
    req = parse_rerank({"model": "m", "query": "q", "documents": ["a", "b"], "top_k": 1, "top_n": None},
                       max_inputs=10)
    assert req.top_n == 1


def test_upstream_answers_with_boolean_indexes_or_negative_usage_are_not_trusted():
    from adapters.http.wire import read_embeddings
    from core.errors import UpstreamError

    ok = {"data": [{"index": 0, "embedding": [1.0, 0.0]}], "usage": {"prompt_tokens": -5}}
    assert read_embeddings(ok, 1, "m")[1] is None
    with pytest.raises(UpstreamError):
        read_embeddings({"data": [{"index": True, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}, 2, "m")


@pytest.mark.parametrize("count", [1, 2, 5])
def test_upstream_vectors_come_back_in_input_order_whatever_order_they_arrive_in(count):
    import base64

    import numpy as np

    from adapters.http.wire import read_embeddings
    from core.errors import UpstreamError

    rows = np.arange(count * 3, dtype=np.float32).reshape(count, 3)
    order = list(reversed(range(count)))
    for as_base64 in (False, True):
        data = [{"index": i, "embedding": base64.b64encode(rows[i].tobytes()).decode() if as_base64
                 else rows[i].tolist()} for i in order]
        vectors, _ = read_embeddings({"data": data}, count, "m")
        assert vectors.shape == (count, 3) and vectors.dtype == np.float32
        assert np.array_equal(vectors, rows)
    with pytest.raises(UpstreamError):  # an index past the inputs
        read_embeddings({"data": [{"index": i + 1, "embedding": [1.0]} for i in range(count)]}, count, "m")
    for bad in (float("nan"), float("inf")):  # refused as the whole answer, before any row is used
        data = [{"index": i, "embedding": [1.0, bad if i == count - 1 else 2.0]} for i in range(count)]
        with pytest.raises(UpstreamError, match="non-finite") as caught:
            read_embeddings({"data": data}, count, "m")
        assert caught.value.code == "upstream_bad_response"
    if count > 1:
        with pytest.raises(UpstreamError, match="different lengths"):
            read_embeddings({"data": [{"index": i, "embedding": [1.0] * (i + 1)} for i in range(count)]}, count, "m")


def test_an_upstream_base64_vector_is_read_exactly_as_the_standard_librarys_strict_decoder_reads_it():
    """Mutated base64 of random float32 rows (a character changed, added or dropped; padding
    past the end; whitespace, URL-safe and non-ASCII characters): what the standard library's
    strict decoder refuses is a 502, what it reads is the vector, byte for byte."""
    import binascii
    import random

    from adapters.http.wire import _vector
    from core.errors import UpstreamError

    rnd = random.Random(7)
    alphabet = "ABCXYZabcxyz0189+/=-_ \n\t.\u00e9\x00"
    checked = refused = 0
    for n in range(6000):
        text = base64.b64encode(np.asarray([rnd.uniform(-1, 1) for _ in range(rnd.randrange(1, 6))],
                                           dtype="<f4").tobytes()).decode()
        chars = list(text)
        for _ in range(rnd.randrange(0, 3)):
            at = rnd.randrange(len(chars) + 1)
            if n % 3 == 0 and at < len(chars):
                chars[at] = rnd.choice(alphabet)
            elif n % 3 == 1:
                chars.insert(at, rnd.choice(alphabet))
            elif chars:
                del chars[min(at, len(chars) - 1)]
        if n % 7 == 0:
            chars.append("=")
        text = "".join(chars)
        try:
            expected = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            expected = None
        if expected is None or not expected or len(expected) % 4:
            with pytest.raises(UpstreamError):
                _vector(text, "m")
            refused += 1
        else:
            assert _vector(text, "m").tobytes() == expected
        checked += 1
    assert refused > 1000 and checked - refused > 1000  # both kinds were tried


@pytest.mark.parametrize("dtype", [np.float32, ">f4", np.int8, np.uint8])
def test_base64_rows_are_the_standard_librarys_text_of_the_little_endian_bytes(dtype):
    from core.dialects.quantize import as_base64

    rng = np.random.default_rng(3)
    for rows, width in ((1, 1), (2, 3), (5, 384), (3, 1025)):
        array = (rng.standard_normal((rows, width)) * 50).astype(dtype)
        little = array.astype(np.dtype(dtype).newbyteorder("<"))
        assert as_base64(array) == [base64.b64encode(row.tobytes()).decode() for row in little]


@pytest.mark.parametrize("shape", [(1, 384), (3, 7), (40, 1024), (0, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
@pytest.mark.parametrize("order", ["C", "F"])
def test_json_rows_write_the_text_of_the_arrays_own_values_whatever_their_size(shape, dtype, order):
    from core.dialects.quantize import json_rows

    rng = np.random.default_rng(1)
    scale = 10.0 ** rng.integers(-30, 30, size=shape) if dtype is np.float32 else 50.0
    values = (rng.normal(size=shape) * scale).astype(dtype, order=order)
    if dtype is np.float32 and values.size:  # the float32 extremes and signed zero, where a repr is likeliest to slip
        values.flat[:6] = [np.float32(1.4e-45), np.float32(3.4028235e38), -0.0, 0.1, 1e-7, 16777217.0]
    text = orjson.dumps(json_rows(values), option=orjson.OPT_SERIALIZE_NUMPY)
    assert text == orjson.dumps(values.tolist())  # the bytes the Python floats and ints gave
    read = np.array(orjson.loads(text), dtype=np.float64).reshape(shape)
    assert np.array_equal(read, values.astype(np.float64))  # a reader of doubles gets each value exactly
