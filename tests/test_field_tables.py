"""The field tables take exactly what their schemas say: a value ``FieldTable.read`` accepts without
calling ``check`` (the common strings, booleans, integers and lists of strings) is one ``check``
accepts, and every other value is read, refused or converted as ``check`` says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.dialects.fields import FieldTable, StrictBody, check
from core.errors import InvalidRequest
from plugins.codecs import BUILTIN_CODECS

FIELDS = {(type(codec).__name__, f.name): f for codec in BUILTIN_CODECS for f in codec.fields.fields}
VALUES = ["", "x", "float", "base64", "int8", "binary", "query", "document", "search_query", "END", "NONE",
          "retrieval.query", True, False, 0, 1, 3, -1, 2**31, 2.0, 2.5, [], ["x"], ["x", ""], ["", "x"],
          ["x", "y", "z"], [1, 2], [1, "x"], [[1, 2], [3]], [{"text": "x"}], [{"text": ""}], [{"nope": "x"}],
          {"text": "x"}, [True], ["x"] * 3000]


def _reference(value, f):
    """What the table read before it had an inline path: ``check``, then 2.0 read as 2."""
    try:
        check(value, f.schema, f.name)
    except InvalidRequest:
        return "refused"
    return int(value) if f.schema.get("type") == "integer" else value


@pytest.mark.parametrize("where,name", sorted(FIELDS))
def test_every_field_reads_each_value_as_its_schema_says(where, name):
    f = FIELDS[(where, name)]
    table = FieldTable((replace(f, required=False),))
    for value in VALUES:
        try:
            got = table.read({name: value}, "/x")[name]
        except InvalidRequest as exc:
            assert exc.param == name
            got = "refused"
        want = _reference(value, f)
        assert got == want and type(got) is type(want), (where, name, value)


def test_the_checked_body_is_a_dict_without_the_nulls():
    [codec] = [c for c in BUILTIN_CODECS if c.path == "/v1/embeddings"]
    body = {"model": "m", "input": "hi", "user": None, "dimensions": 4.0}
    read = codec.fields.read(body, "/v1/embeddings")
    assert isinstance(read, StrictBody) and isinstance(read, dict)
    assert read == {"model": "m", "input": "hi", "dimensions": 4} and type(read["dimensions"]) is int
    assert body["user"] is None and body["dimensions"] == 4.0  # the client's body is left as it came
    with pytest.raises(InvalidRequest) as caught:
        codec.fields.read({"input": "hi", "model": None}, "/v1/embeddings")
    assert caught.value.param == "model"
    with pytest.raises(InvalidRequest) as caught:
        codec.fields.read({"model": "m", "input": "hi", "nope": 1, "also": 2}, "/v1/embeddings")
    assert caught.value.param == "nope" and caught.value.code == "unknown_parameter"


@pytest.mark.parametrize("codec", BUILTIN_CODECS, ids=lambda c: f"{type(c).__name__}{c.path}")
def test_a_whole_body_is_refused_for_the_first_field_amiss_in_the_table_order(codec):
    """Whatever the body's key order, the field named is the table's first that is missing (when
    required) or holds a value its schema refuses; a body with none amiss reads each value as
    ``check`` does."""
    import random

    rng = random.Random(7)
    table = codec.fields
    for _ in range(400):
        picked = rng.sample(table.fields, rng.randint(0, min(6, len(table.fields))))
        body = {f.name: rng.choice(VALUES) for f in picked}
        keys = list(body)
        rng.shuffle(keys)
        body = {k: body[k] for k in keys}
        amiss = None
        for f in table.fields:  # the table's order
            if f.name not in body:
                if f.required:
                    amiss = f.name
                    break
            elif _reference(body[f.name], f) == "refused":
                amiss = f.name
                break
        exclusive = next((b for a, b in table.exclusive if a in body and b in body), None)
        try:
            read = table.read(body, codec.path)
        except InvalidRequest as exc:
            assert exc.param == (exclusive or amiss), (body, exc.message)
            continue
        assert exclusive is None and amiss is None, body
        assert read == {k: _reference(v, table.by_name[k]) for k, v in body.items()}
