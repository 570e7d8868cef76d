"""The plugin system: throwaway plugins add an adapter type and a stage; the chain order is explicit."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from core import hookimpl, hookspecs
from core.app import create_app
from core.chain import SLOTS
from core.config import Settings
from core.http import GATEWAY
from core.metrics import GatewayMetrics
from core.plugins import BUILTIN_NAMES, DEFAULT_PLUGINS, build_plugin_manager
from tests.support.configs import write_yaml
from tests.support.echo import EchoAdapter


class TracingStage:
    name = "trace"

    def __init__(self):
        self.seen = []

    async def __call__(self, flow):
        self.seen.append((flow.request.model, list(flow.stages_run)))
        flow.response_headers["X-Traced"] = "1"


class ThrowawayPlugin:
    def __init__(self):
        self.stage = TracingStage()
        self.finished = []

    @hookimpl
    def register_adapters(self, register):
        register("echo", EchoAdapter)

    @hookimpl
    def register_stages(self, register):
        register(self.stage, after="route")

    @hookimpl
    def request_finished(self, flow):
        self.finished.append((flow.request_id, list(flow.stages_run), flow.status))


def _configs(tmp_path: Path) -> Settings:
    write_yaml(tmp_path / "routing.yaml", {
        "embeddings": [{"model": "echo-emb", "upstream": {"type": "echo", "dim": 8}}],
        "rerank": [{"model": "echo-rerank", "max_top_k": 2, "upstream": {"type": "echo"}}],
    })
    write_yaml(tmp_path / "auth.yaml", {"api_keys": [], "allow_anonymous_without_api_keys": True})
    write_yaml(tmp_path / "rate_limits.yaml", {"default": {"capacity": 100, "refill_rate": 100}})
    return Settings(routing_path=str(tmp_path / "routing.yaml"), auth_path=str(tmp_path / "auth.yaml"),
                    rate_limits_path=str(tmp_path / "rate_limits.yaml"))


@pytest.fixture
def plugin():
    return ThrowawayPlugin()


@pytest.fixture
async def client(aiohttp_client, tmp_path, plugin):
    pm = build_plugin_manager(entry_points=False)
    pm.register(plugin, name="throwaway")
    try:
        app = create_app(_configs(tmp_path), pm)
        client = await aiohttp_client(app)
        for _ in range(100):
            if app[GATEWAY].ready:
                break
            await __import__("asyncio").sleep(0.02)
        yield client
    finally:
        pm.unregister(plugin)


async def test_third_party_adapter_type_serves_a_route(client):
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": ["ab", "abcd"],
                                                     "encoding_format": "float"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    first = np.asarray(body["data"][0]["embedding"])
    assert len(first) == 8
    assert first[0] == pytest.approx(2.0)
    rr = await (await client.post("/v1/rerank", json={"model": "echo-rerank", "query": "q",
                                                      "documents": ["a", "abc", "ab"], "top_n": 5})).json()
    # sorted by score and capped by max_top_k=2
    assert [r["index"] for r in rr["results"]] == [1, 2]


async def test_exact_stage_order_for_one_request(client, plugin):
    gateway = client.app[GATEWAY]
    assert gateway.chain.names == ("auth", "rate_limit", "parse", "route", "trace", "token_limit", "token_budget",
                                   "adapter")
    resp = await client.post("/v1/embeddings", json={"model": "echo-emb", "input": "x"},
                             headers={"X-Request-ID": "order-1"})
    assert resp.status == 200
    assert resp.headers["X-Traced"] == "1"
    at_trace = ["auth", "rate_limit", "parse", "route", "trace"]
    assert plugin.stage.seen == [("echo-emb", at_trace)]
    assert plugin.finished == [("order-1", at_trace + ["token_limit", "token_budget", "adapter"], 200)]


async def test_a_failing_stage_stops_the_chain_and_is_reported(client, plugin):
    resp = await client.post("/v1/embeddings", json={"model": "missing", "input": "x"})
    assert resp.status == 404
    assert plugin.finished[-1][1] == ["auth", "rate_limit", "parse", "route"]
    assert plugin.finished[-1][2] == 404
    assert plugin.stage.seen == []


def test_builtins_fill_every_slot_and_are_plugins():
    pm = build_plugin_manager(entry_points=False)
    names = {name for name, _ in pm.list_name_plugin()}
    assert BUILTIN_NAMES <= names and len(BUILTIN_NAMES) == len(DEFAULT_PLUGINS)
    from core.chain import ChainBuilder
    from core.config.sections import SettingsSection
    from core.plugins import Hooks

    hooks = Hooks(pm)
    sections: list[SettingsSection] = []
    hooks.register_settings(lambda origin, builtin: sections.append)  # the built-ins' variables, at defaults
    settings = Settings(sections={s.cls: s.read({}) for s in sections})
    builder = ChainBuilder()
    hooks.register_stages(builder, settings, GatewayMetrics())
    chain = builder.build()
    names = chain.names
    assert names == ("auth", "rate_limit", "parse", "route", "token_limit", "token_budget", "adapter")
    assert chain.origins == ("plugins.auth", "plugins.rate_limit", "plugins.parse", "plugins.routing",
                             "plugins.token_limit", "plugins.rate_limit", "plugins.invoke")
    assert [n for n in names if n in SLOTS] == list(SLOTS)


def test_blocked_plugin_is_not_loaded():
    pm = build_plugin_manager(["adapters.local"], entry_points=False)
    assert pm.get_plugin("adapters.local") is None
    found = []
    pm.hook.register_adapters(register=lambda name, factory: found.append(name))
    assert "local" not in found and "infinity" in found


def test_unknown_upstream_type_is_a_config_error(tmp_path):
    from core.errors import ConfigError
    from core.gateway import Gateway

    settings = _configs(tmp_path)
    with pytest.raises(ConfigError, match="unknown upstream type 'echo'"):
        Gateway(settings, build_plugin_manager(entry_points=False)).validate()


def _hook_names() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "maas_spec")]


def test_every_hook_is_documented_and_tested():
    names = _hook_names()
    assert {"register_adapters", "register_stages", "startup", "shutdown", "request_finished",
            "config_changed", "register_feature_flags"} <= set(names)
    tests_text = "\n".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    for name in names:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and "versionadded" in fn.__doc__, f"hook {name} lacks a docstring"
        assert f"def {name}(" in tests_text, f"hook {name} has no test implementing it"


class LifecyclePlugin:
    def __init__(self):
        self.events = []

    @hookimpl
    async def startup(self, app):
        self.events.append("startup")

    @hookimpl
    async def config_changed(self, snapshot, previous):
        self.events.append(("config_changed", previous is None, sorted(snapshot.models)))

    @hookimpl
    def shutdown(self, app):
        self.events.append("shutdown")

    @hookimpl
    def register_feature_flags(self, register):
        register("lifecycle_test_flag", "used only by this test")


async def test_lifecycle_hooks_are_awaited_in_order(aiohttp_server, tmp_path):
    pm = build_plugin_manager(entry_points=False)
    lifecycle = LifecyclePlugin()
    pm.register(lifecycle)
    pm.register(ThrowawayPlugin())
    settings = _configs(tmp_path)
    app = create_app(settings, pm)
    assert "lifecycle_test_flag" in app[GATEWAY].known_flags
    server = await aiohttp_server(app)
    for _ in range(100):
        if app[GATEWAY].ready:
            break
        await __import__("asyncio").sleep(0.02)
    await server.close()
    assert lifecycle.events == ["startup", ("config_changed", True, ["echo-emb", "echo-rerank"]), "shutdown"]


def test_request_finished_observers_are_called_as_pluggy_would_and_follow_registrations():
    from core.plugins import Hooks

    calls: list[str] = []

    def observer(label: str, *, wrapper: bool = False, takes_flow: bool = True):
        class Observer:
            if wrapper:
                @hookimpl(wrapper=True)
                def request_finished(self, flow):
                    calls.append(f"{label}:before")
                    yield
                    calls.append(f"{label}:after")
            elif takes_flow:
                @hookimpl
                def request_finished(self, flow):
                    calls.append(f"{label}:{flow}")
            else:
                @hookimpl
                def request_finished(self):
                    calls.append(label)
        return Observer()

    pm = build_plugin_manager(entry_points=False)
    hooks = Hooks(pm)
    first, second = observer("first"), observer("second", takes_flow=False)
    pm.register(first)
    hooks.request_finished("f1")
    assert calls == ["first:f1"]
    calls.clear()
    pm.register(second)  # a plugin registered later is observed from then on
    hooks.request_finished("f2")
    ours = list(calls)
    calls.clear()
    pm.hook.request_finished(flow="f2")
    assert ours == calls == ["second", "first:f2"]  # pluggy's order: the last registered first
    calls.clear()
    pm.unregister(second)
    hooks.request_finished("f3")
    assert calls == ["first:f3"]
    calls.clear()
    pm.register(observer("wrap", wrapper=True))  # a wrapper: pluggy's machinery runs them all
    hooks.request_finished("f4")
    assert calls == ["wrap:before", "first:f4", "wrap:after"]


async def test_the_chain_awaits_what_a_stage_returns_and_nothing_when_it_returns_none():
    """Stages may be ``async def``, plain functions that settle the flow, or plain functions that
    return an awaitable when they must wait: each runs once, in order, and the chain stops at
    the first that sets a response."""
    import asyncio

    from core.chain import SETTLED, Chain, FunctionStage

    ran: list[str] = []

    def settled(flow):
        ran.append("settled")
        return SETTLED

    async def waits(flow):
        await asyncio.sleep(0)
        ran.append("async")

    def settles(flow):
        ran.append("sync")

    def hands_back(flow):
        async def later():
            await asyncio.sleep(0)
            ran.append("returned")
            flow.response = {"done": True}
        return later()

    def never(flow):
        ran.append("after the response")

    class FakeFlow:
        response = None
        stages_run: list[str] = []

    flow = FakeFlow()
    chain = Chain([FunctionStage("a", waits), FunctionStage("b", settles), FunctionStage("s", settled),
                   FunctionStage("c", hands_back), FunctionStage("d", never)])
    await chain.run(flow)  # type: ignore[arg-type]
    assert ran == ["async", "sync", "settled", "returned"]
    assert flow.stages_run == ["a", "b", "s", "c"] and flow.response == {"done": True}
    assert await SETTLED is None  # code that awaits a stage itself may await what a settled one returns
