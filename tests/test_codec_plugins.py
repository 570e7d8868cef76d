"""Wire formats are plugins: a third party's codec, installed as an entry point, serves its own
path through the whole chain, refuses unknown fields, answers errors in its own shape and is in
/openapi.json; precedence is the chain's. And /v1/models runs the stages every request runs."""

from __future__ import annotations

import asyncio

import pytest

from core import hookimpl
from core.app import create_app
from core.config import Settings
from core.dialects import Codec
from core.errors import ConfigError
from core.gateway import Gateway
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from tests.support import echo
from tests.support.inprocess import write_configs
from tests.test_plugin_precedence import _install, _manager

PLAIN_CODEC = '''
from dataclasses import dataclass

from core import hookimpl
from core.dialects import Codec, Parsed
from core.dialects.fields import NONEMPTY_STRING, STRINGS, Field, FieldTable
from core.requests import EmbeddingsRequest


@dataclass(frozen=True)
class Rounding:
    digits: int


class PlainEmbed(Codec):
    """A made-up format: {"model", "texts", "digits"} in, {"vectors", "used"} out, {"problem"} on error."""

    name = "plainEmbed"
    path = "/plain/embed"
    kind = "embeddings"
    summary = "Embeddings in the plain format"
    fields = FieldTable((Field("model", NONEMPTY_STRING, "the model", required=True),
                         Field("texts", STRINGS, "what to embed", required=True),
                         Field("digits", {"type": "integer", "minimum": 1, "maximum": 8}, "rounding")))
    error_schema = ("PlainError", {"type": "object", "required": ["problem"],
                                   "properties": {"problem": {"type": "string"}}})

    def parse(self, body, limits):
        b = self.fields.read(body, self.path)
        request = EmbeddingsRequest(model=b["model"], inputs=list(b["texts"]), is_tokens=False)
        return Parsed(request, Rounding(b.get("digits", 3)))

    def render(self, request, state, outcome):
        return {"vectors": [[round(float(x), state.digits) for x in row] for row in outcome.vectors],
                "used": outcome.tokens}

    def render_error(self, error):
        return {"problem": error.message}


@hookimpl
def register_codecs(register):
    register(PlainEmbed())
'''


async def _serve(aiohttp_client, settings: Settings, pm):
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    return client


async def test_an_entry_point_codec_serves_its_own_path_and_shapes(aiohttp_client, tmp_path, site):
    _install(site, "maas-plain", "maas_plain", PLAIN_CODEC)
    pm = build_plugin_manager()
    pm.register(echo, name="tests.support.echo")
    client = await _serve(aiohttp_client, write_configs(tmp_path), pm)

    resp = await client.post("/plain/embed", json={"model": "echo-emb", "texts": ["a b", "c"], "digits": 2})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    openai = await (await client.post("/v1/embeddings", json={"model": "echo-emb", "input": ["a b", "c"]})).json()
    assert body["vectors"] == [[round(x, 2) for x in d["embedding"]] for d in openai["data"]]
    assert body["used"] == openai["usage"]["prompt_tokens"]

    refused = await client.post("/plain/embed", json={"model": "echo-emb", "texts": ["a"], "extra": 1})
    assert refused.status == 400 and "extra" in (await refused.json())["problem"]
    missing = await client.post("/plain/embed", json={"model": "nope", "texts": ["a"]})
    assert missing.status == 404 and set(await missing.json()) == {"problem"}
    wrong_method = await client.get("/plain/embed")
    assert wrong_method.status == 405 and set(await wrong_method.json()) == {"problem"}

    doc = await (await client.get("/openapi.json")).json()
    op = doc["paths"]["/plain/embed"]["post"]
    assert set(op["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"model", "texts",
                                                                                            "digits"}
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlainError"}
    assert "PlainError" in doc["components"]["schemas"]


class _Replacement(Codec):
    path = "/v1/embeddings"
    kind = "embeddings"


class _CodecSwap:
    @hookimpl
    def register_codecs(self, register):
        register(_Replacement())


def test_a_third_party_codec_replaces_a_built_in_path_and_two_clash():
    gateway = Gateway(Settings(), _manager(_CodecSwap()))
    assert isinstance(gateway.codecs.by_path["/v1/embeddings"], _Replacement)
    assert gateway.codecs.default("embeddings") is gateway.codecs.by_path["/v1/embeddings"]
    with pytest.raises(ConfigError, match="/v1/embeddings is registered by both third-0 and third-1"):
        Gateway(Settings(), _manager(_CodecSwap(), _CodecSwap()))


class _Everyone:
    """A stage for every request (it sees /v1/models too) and one for model calls only."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def register_stages(self, register):
        seen = self.seen

        class Audit:
            name = "audit"

            async def __call__(self, flow):
                seen.append(("audit", flow.kind))

        class ModelsOnly:
            name = "model_only"

            async def __call__(self, flow):
                seen.append(("model_only", flow.kind))

        register(Audit(), after="auth", every_request=True)
        register(ModelsOnly(), before="route")


async def test_models_runs_the_every_request_stages_and_charges_no_budget(aiohttp_client, tmp_path):
    plugin = _Everyone()
    pm = build_plugin_manager(entry_points=False)
    pm.register(echo, name="tests.support.echo")
    pm.register(plugin, name="everyone")
    auth = {"api_keys": [{"key": "k-1", "name": "one"}]}
    limits = {"default": {"capacity": 1, "refill_rate": 0.001}}  # one model call, then 429 for a long time
    client = await _serve(aiohttp_client, write_configs(tmp_path, auth=auth, limits=limits), pm)
    headers = {"Authorization": "Bearer k-1"}

    assert (await client.get("/v1/models")).status == 401  # auth runs
    for _ in range(3):
        resp = await client.get("/v1/models", headers=headers)
        assert resp.status == 200
    assert (await client.get("/v1/models/echo-emb", headers=headers)).status == 200
    assert plugin.seen == [("audit", "models")] * 4  # the model-call stage never ran; 401 stopped the first
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"}, headers=headers)
    assert resp.status == 200, "listing models must not spend the key's one request"
    assert plugin.seen[-2:] == [("audit", "embeddings"), ("model_only", "embeddings")]
