"""/openapi.json is generated from the codecs' field tables: it lists every route the app serves,
and each request schema is the table the parser enforces."""

from __future__ import annotations

import pytest

from core.dialects import BUILTIN_CODECS
from tests.support.inprocess import serve, write_configs


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    return await serve(aiohttp_client, write_configs(tmp_path))


async def test_the_document_describes_exactly_the_served_routes(client):
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    served = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("GET", "POST", "DELETE") and path not in ("/metrics", "/openapi.json") \
                and not path.startswith("/docs"):  # the page that shows the document
            served.add((route.method.lower(), path.replace("{model_id:.+}", "{model_id}")))
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == served


async def test_each_request_schema_is_the_parsers_field_table(client):
    doc = await (await client.get("/openapi.json")).json()
    for codec in BUILTIN_CODECS:
        schema = doc["paths"][codec.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        options = schema.get("oneOf", [schema])
        assert len(options) == len(codec.alternatives())
        for option, alt in zip(options, codec.alternatives(), strict=True):
            assert set(option["properties"]) == set(alt.fields.by_name)
            assert option["additionalProperties"] is False
            assert set(option.get("required", [])) == {f.name for f in alt.fields.fields if f.required}
        assert "400" in doc["paths"][codec.path]["post"]["responses"]
