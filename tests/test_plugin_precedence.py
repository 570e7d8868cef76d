"""Plugin precedence by origin: entry-point plugins replace built-in slots and adapter types
whatever pluggy's call order; two third parties claiming one is an error naming both. And the
chain's order: the model is chosen before anything is counted or charged."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core import hookimpl
from core.app import create_app
from core.config import Settings
from core.errors import ConfigError
from core.gateway import Gateway
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from core.tokenization import TokenCounter
from tests.support import echo
from tests.support.inprocess import ECHO_ROUTING, write_configs

SWAP_AUTH = '''
from core import hookimpl
from core.errors import AuthError
from core.flow import Caller


class HeaderAuth:
    """Replaces the built-in auth: the caller is whoever X-Tenant names."""

    name = "auth"

    async def __call__(self, flow):
        tenant = flow.headers.get("X-Tenant")
        if not tenant:
            raise AuthError("send X-Tenant", code="missing_tenant")
        flow.caller = Caller(name=tenant, anonymous=False, client_ip=flow.client_ip)


@hookimpl
def register_stages(register):
    register(HeaderAuth())
'''

ADD_STAGE = '''
from core import hookimpl


class Stamp:
    name = "stamp"

    async def __call__(self, flow):
        flow.response_headers["X-Stamp"] = ",".join(flow.stages_run)


@hookimpl
def register_stages(register):
    register(Stamp(), before="route")
'''


def _install(site: Path, dist: str, module: str, source: str) -> None:
    """A distribution on ``site`` with a ``maas`` entry point, as ``pip install`` would leave it."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    meta = site / f"{dist}-0.0.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.0\n")
    (meta / "entry_points.txt").write_text(f"[maas]\n{module} = {module}\n")


async def test_an_entry_point_plugin_replaces_auth_and_adds_a_stage(aiohttp_client, tmp_path, site):
    _install(site, "maas-swap-auth", "maas_swap_auth", SWAP_AUTH)
    _install(site, "maas-stamp", "maas_stamp", ADD_STAGE)
    pm = build_plugin_manager()  # built-ins first, then every entry point: pluggy calls the third party first
    pm.register(echo, name="tests.support.echo")
    app = create_app(write_configs(tmp_path / "cfg", auth={"api_keys": [{"key": "k-1", "name": "one"}]}), pm)
    chain = app[GATEWAY].chain
    assert chain.names == ("auth", "rate_limit", "parse", "stamp", "route", "token_limit", "token_budget", "adapter")
    assert chain.origins == ("maas_swap_auth", "plugins.rate_limit", "plugins.parse", "maas_stamp", "plugins.routing",
                             "plugins.token_limit", "plugins.rate_limit", "plugins.invoke")
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await __import__("asyncio").sleep(0.01)
    # the built-in would want a key from auth.yaml; the replacement wants X-Tenant
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"}, headers={"X-Tenant": "t"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Stamp"] == "auth,rate_limit,parse,stamp"
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"},
                             headers={"Authorization": "Bearer k-1"})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_tenant"


def test_two_third_party_plugins_claiming_one_slot_is_an_error_naming_both(site):
    _install(site, "maas-swap-auth", "maas_swap_auth", SWAP_AUTH)
    _install(site, "maas-other-auth", "maas_other_auth", SWAP_AUTH)
    with pytest.raises(ConfigError) as err:
        Gateway(Settings(), build_plugin_manager())
    assert "'auth'" in err.value.message
    assert "maas_swap_auth" in err.value.message and "maas_other_auth" in err.value.message


class _Replacement(echo.EchoAdapter):
    pass


class _TypeSwap:
    @hookimpl
    def register_adapters(self, register):
        register("infinity", _Replacement)


def test_two_third_party_plugins_adding_one_extra_stage_name_clash(site):
    _install(site, "maas-stamp", "maas_stamp", ADD_STAGE)
    _install(site, "maas-stamp-again", "maas_stamp_again", ADD_STAGE)
    with pytest.raises(ConfigError, match="'stamp' is registered by both maas_stamp(_again)? and maas_stamp"):
        Gateway(Settings(), build_plugin_manager())


def test_a_third_party_adapter_type_replaces_a_built_in_and_two_clash():
    gateway = Gateway(Settings(), _manager(_TypeSwap()))
    assert gateway.registry.factories["infinity"] is _Replacement
    assert gateway.registry.origin("infinity") == "third-0"
    with pytest.raises(ConfigError, match="'infinity' is registered by both third-0 and third-1"):
        Gateway(Settings(), _manager(_TypeSwap(), _TypeSwap()))


def test_an_adapter_type_must_subclass_the_base():
    class NotAnAdapter:
        def __init__(self, upstream, context):
            pass

    class Plugin:
        @hookimpl
        def register_adapters(self, register):
            register("plain", NotAnAdapter)

    with pytest.raises(ConfigError, match="'plain' from third-0 must be a subclass of core.adapters.Adapter"):
        Gateway(Settings(), _manager(Plugin()))


def _manager(*plugins):
    pm = build_plugin_manager(entry_points=False)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"third-{i}")
    return pm


class _Observer:
    def __init__(self):
        self.flows = []

    @hookimpl
    def request_finished(self, flow):
        self.flows.append((flow.status, list(flow.stages_run), flow.token_counts))


async def test_a_refused_model_costs_no_tokenization_and_no_token_budget(aiohttp_client, tmp_path, monkeypatch):
    auth = {"api_keys": [{"key": "k-rerank-only", "name": "narrow", "models": ["echo-rerank"]}]}
    # 40 requests, but only 12 tokens a minute: one forbidden call charged would exhaust it
    limits = {"default": {"capacity": 40, "refill_rate": 1, "tokens_per_minute": 12}}
    settings = write_configs(tmp_path, routing=ECHO_ROUTING, auth=auth, limits=limits)
    observer = _Observer()
    pm = build_plugin_manager(entry_points=False)
    pm.register(echo, name="tests.support.echo")
    pm.register(observer, name="observer")
    tokenized: list[int] = []
    real_count, real_pairs = TokenCounter.count, TokenCounter.count_query_documents
    monkeypatch.setattr(TokenCounter, "count", lambda self, texts: tokenized.append(1) or real_count(self, texts))
    monkeypatch.setattr(TokenCounter, "count_query_documents",
                        lambda self, q, docs: tokenized.append(1) or real_pairs(self, q, docs))
    app = create_app(settings, pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await __import__("asyncio").sleep(0.01)
    headers = {"Authorization": "Bearer k-rerank-only"}
    body = {"model": "echo-emb", "input": "one two three four five six seven eight"}
    for _ in range(5):
        resp = await client.post("/v1/embeddings", json=body, headers=headers)
        assert resp.status == 403, await resp.text()
    assert tokenized == []
    assert [f[1] for f in observer.flows] == [["auth", "rate_limit", "parse", "route"]] * 5
    assert all(counts is None for _, _, counts in observer.flows)
    resp = await client.post("/v1/rerank", json={"model": "echo-rerank", "query": "q", "documents": ["a b c"]},
                             headers=headers)
    assert resp.status == 200, await resp.text()  # [CLS] q [SEP] a b c [SEP] = 7 of the 12 tokens
    assert resp.headers["x-ratelimit-remaining-tokens"] == "5"
    assert tokenized and observer.flows[-1][2] == [7]


async def test_startup_and_shutdown_receive_the_gateway_and_builtins_close_their_state(aiohttp_server, tmp_path):
    seen = []

    class Lifecycle:
        @hookimpl
        async def startup(self, gateway):
            seen.append(("startup", gateway))

        @hookimpl
        def shutdown(self, app, gateway):
            seen.append(("shutdown", app[GATEWAY] is gateway))

    pm = build_plugin_manager(entry_points=False)
    pm.register(echo, name="tests.support.echo")
    pm.register(Lifecycle(), name="lifecycle")
    app = create_app(write_configs(tmp_path, routing={
        "feature_flags": ["coalesce_embeddings"],
        "embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}}]}), pm)
    server = await aiohttp_server(app)
    client_session = __import__("aiohttp").ClientSession()
    while not app[GATEWAY].ready:
        await __import__("asyncio").sleep(0.01)
    async with client_session as session:
        async with session.post(str(server.make_url("/v1/embeddings")), json={"model": "echo-emb", "input": "x"}) as r:
            assert r.status == 200
    schedulers = app[GATEWAY].services.schedulers
    assert schedulers.schedulers  # the request went through the model's queue
    await server.close()
    assert seen == [("startup", app[GATEWAY]), ("shutdown", True)]
    assert schedulers.schedulers == []  # closed with the gateway that owns them


def test_route_options_declared_by_a_plugin_are_checked_with_file_and_line(tmp_path):
    from core.options import Option

    class Declares:
        @hookimpl
        def register_route_options(self, register):
            register(Option("audit_tag", str, "none", "a label for audit logs"))

    routing = {"embeddings": [{"model": "echo-emb", "upstream": {"type": "echo"}, "options": {"audit_tag": "x"}},
                              {"model": "echo-2", "upstream": {"type": "echo"}}]}
    pm = _manager(Declares())
    pm.register(echo, name="tests.support.echo")
    gateway = Gateway(write_configs(tmp_path, routing=routing), pm)
    routes = gateway.validate().routing.routes
    assert routes["echo-emb"].options["audit_tag"] == "x"
    assert routes["echo-2"].options["audit_tag"] == "none"  # the default, filled in
    assert routes["echo-2"].options["coalesce_max_request"] == 8  # the invoke plugin's declared default
    routing["embeddings"][1]["options"] = {"audit_tga": "y"}
    settings = write_configs(tmp_path, routing=routing)
    with pytest.raises(ConfigError) as err:
        Gateway(settings, pm).validate()
    assert "unknown option 'audit_tga'" in err.value.message and "audit_tag" in err.value.message
    assert err.value.file == settings.routing_path
    text = Path(settings.routing_path).read_text().splitlines()
    assert "audit_tga" in text[err.value.line - 1]
