"""Plugins own their config: a plugin declares its environment variables (read into its own typed
settings, checked like core's) and may put a layer in front of every embedding model, as the
embedding cache does; precedence between plugins is the chain's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from core import hookimpl
from core.adapters import EmbedResult
from core.app import create_app
from core.config import Settings
from core.config.sections import EnvOption, SettingsSection
from core.errors import ConfigError
from core.gateway import Gateway
from core.http import GATEWAY
from core.plugins import build_plugin_manager
from tests.support import echo
from tests.support.inprocess import write_configs


@dataclass(frozen=True)
class AuditSettings:
    endpoint: str | None = field(default=None, repr=False)
    batch: int = 10
    verbose: bool = False
    tags: tuple[str, ...] = ()


AUDIT = SettingsSection(AuditSettings, (
    EnvOption("AUDIT_ENDPOINT", "endpoint", "str", None, "where audit records go", secret=True),
    EnvOption("AUDIT_BATCH", "batch", "int", 10, "records per flush", minimum=1),
    EnvOption("AUDIT_VERBOSE", "verbose", "bool", False, "log every record"),
    EnvOption("AUDIT_TAGS", "tags", "list", (), "tags on every record"),
), title="audit")


class _Audit:
    def __init__(self):
        self.seen: list[AuditSettings] = []

    @hookimpl
    def register_settings(self, register):
        register(AUDIT)

    @hookimpl
    def register_stages(self, register, settings):
        self.seen.append(settings.of(AuditSettings))


def _gateway(env: dict[str, str], *plugins) -> Gateway:
    pm = build_plugin_manager(entry_points=False)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"third-{i}")
    return Gateway(Settings.from_env(env), pm)


def test_a_plugin_reads_its_own_variables_into_its_typed_settings():
    audit = _Audit()
    gateway = _gateway({"AUDIT_ENDPOINT": "https://u:pw@audit/x\n", "AUDIT_BATCH": "25", "AUDIT_VERBOSE": "yes",
                        "AUDIT_TAGS": "a, b"}, audit)
    want = AuditSettings(endpoint="https://u:pw@audit/x", batch=25, verbose=True, tags=("a", "b"))
    assert audit.seen == [want] and gateway.settings.of(AuditSettings) == want
    assert "pw@audit" not in repr(gateway.settings.of(AuditSettings))
    assert _gateway({}, _Audit()).settings.of(AuditSettings) == AuditSettings()  # the declared defaults
    assert not hasattr(Settings(), "batch")  # core's settings keep core's variables


@pytest.mark.parametrize("value", ["0", "many", "nan"])
def test_a_bad_plugin_variable_stops_the_start_naming_it(value):
    with pytest.raises(ConfigError, match="AUDIT_BATCH"):
        _gateway({"AUDIT_BATCH": value}, _Audit())


def test_asking_for_a_section_nobody_registered_says_so():
    with pytest.raises(LookupError, match="AuditSettings"):
        Settings().of(AuditSettings)


class _KnownAnswers:
    """A layer that answers inputs starting with 'known:' itself (a unit vector on the first
    axis) and asks the model for the rest, on routes whose alias starts with 'layered'."""

    def __init__(self):
        self.closed = False

    def bind(self, route, flags, *, upstream_schema, route_schema):
        return self if route.alias.startswith("layered") else None

    def counts_usage(self, flags):
        return True

    async def embed(self, inputs, is_tokens, compute, call):
        misses = [x for x in inputs if not str(x).startswith("known:")]
        fresh = iter((await compute(misses)).vectors if misses else [])
        width = 4
        rows = [np.eye(width, dtype=np.float32)[0] if str(x).startswith("known:") else next(fresh) for x in inputs]
        return EmbedResult(np.stack(rows)), len(inputs) - len(misses)

    async def close(self):
        self.closed = True


class _LayerPlugin:
    def __init__(self):
        self.layer = _KnownAnswers()

    @hookimpl
    def register_embed_layers(self, register, settings, metrics):
        register(self.layer)


async def test_a_third_party_layer_replaces_the_cache_and_sits_in_front_of_the_model(aiohttp_client, tmp_path):
    plugin = _LayerPlugin()
    pm = build_plugin_manager(entry_points=False)
    pm.register(echo, name="tests.support.echo")
    pm.register(plugin, name="layer-plugin")
    routing = {"embeddings": [{"model": "layered", "upstream": {"type": "echo", "dim": 4}},
                              {"model": "plain", "upstream": {"type": "echo", "dim": 4}}]}
    app = create_app(write_configs(tmp_path, routing=routing), pm)
    assert app[GATEWAY].services.layer is plugin.layer  # not the built-in cache
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)

    resp = await client.post("/v1/embeddings", json={"model": "layered", "input": ["known:a", "fresh text"]})
    assert resp.status == 200 and resp.headers["X-Cache-Hits"] == "1"
    data = (await resp.json())["data"]
    plain = await (await client.post("/v1/embeddings", json={"model": "plain", "input": ["fresh text"]})).json()
    assert data[0]["embedding"] == [1.0, 0.0, 0.0, 0.0]
    assert data[1]["embedding"] == plain["data"][0]["embedding"]  # the model's own answer for the rest
    resp = await client.post("/v1/embeddings", json={"model": "plain", "input": ["known:a"]})
    assert "X-Cache-Hits" not in resp.headers  # not bound on that route
    await client.close()
    assert plugin.layer.closed


def test_two_third_party_layers_clash():
    with pytest.raises(ConfigError, match="embed layer is registered by both third-0 and third-1"):
        _gateway({}, _LayerPlugin(), _LayerPlugin())


class _Tags:
    """Owns a per_api_key field (``tag``) and a top-level key (``tag_default``) of rate_limits.yaml."""

    @hookimpl
    def register_limits(self, register):
        from core.config.limits import LimitsSection
        from core.config.yamlfile import expect

        def read_tag(entry, parent, name, label):
            tag = expect(entry, "tag", str)
            if not tag.isidentifier():
                raise entry.fail(f"{label}: 'tag' must be a name", "tag")
            return tag

        register(LimitsSection("tags", frozenset({"tag"}), read_tag, top_level=("tag_default",),
                               read_top=lambda value, doc, key: str(value)))


def _limits(tmp_path, text: str, *plugins):
    (tmp_path / "rate_limits.yaml").write_text(text)
    settings = write_configs(tmp_path / "cfg", routing={"embeddings": []},
                             auth={"api_keys": [{"name": "alpha", "key": "sk-test-alpha-1"}]})
    from dataclasses import replace

    gateway = _gateway({}, *plugins)
    gateway.settings = replace(settings, sections=gateway.settings.sections,
                               rate_limits_path=str(tmp_path / "rate_limits.yaml"))
    return gateway.validate()


def test_a_plugin_owns_its_part_of_rate_limits_and_gets_it_typed(tmp_path):
    files = _limits(tmp_path, "tag_default: general\ndefault: {capacity: 5, refill_rate: 1}\n"
                              "per_api_key:\n  alpha: {tag: search, capacity: 9, refill_rate: 1, weight: 2}\n",
                    _Tags())
    limits = files.rate_limits
    assert limits.resolve("tags", files.auth)[0] == {"alpha": "search"}
    assert limits.top("tags") == {"tag_default": "general"}
    assert limits.resolve("buckets", files.auth)[0]["alpha"].capacity == 9  # the other owners' parts too
    assert limits.resolve("scheduling", files.auth)[0]["alpha"].weight == 2


@pytest.mark.parametrize(("text", "line", "word"), [
    ("per_api_key:\n  alpha:\n    tag: 'not a name'\n", 3, "tag"),
    ("per_api_key:\n  alpha: {tag: ok, colour: red}\n", 2, "colour"),
    ("colour: red\n", 1, "colour"),
])
def test_each_part_is_checked_by_its_owner_and_a_part_nobody_owns_is_refused(tmp_path, text, line, word):
    with pytest.raises(ConfigError) as info:
        _limits(tmp_path, text, _Tags())
    assert word in info.value.message and info.value.line == line
    with pytest.raises(ConfigError, match="tag"):  # without the plugin, its field has no owner
        _limits(tmp_path, "per_api_key:\n  alpha: {tag: ok}\n")


def test_two_plugins_declaring_one_variable_clash():
    class Other:
        @hookimpl
        def register_settings(self, register):
            register(SettingsSection(AuditSettings, (EnvOption("AUDIT_BATCH", "batch", "int", 3),)))

    with pytest.raises(ConfigError, match="AUDIT_BATCH is declared by both third-0 and third-1"):
        _gateway({}, _Audit(), Other())


def test_two_owners_of_one_rate_limits_field_clash(tmp_path):
    class Capacity:
        @hookimpl
        def register_limits(self, register):
            from core.config.limits import LimitsSection

            register(LimitsSection("mine", frozenset({"capacity"}), lambda entry, parent, name, label: None))

    with pytest.raises(ConfigError, match="field 'capacity' is declared by both '(buckets|mine)' and '(mine|buckets)'"):
        _gateway({}, Capacity())  # at start, before any file is read


def test_a_secret_variable_must_stay_out_of_its_dataclass_repr():
    @dataclass(frozen=True)
    class Leaky:
        token: str | None = None

    with pytest.raises(TypeError, match="LEAKY_TOKEN needs field"):
        SettingsSection(Leaky, (EnvOption("LEAKY_TOKEN", "token", secret=True),))
