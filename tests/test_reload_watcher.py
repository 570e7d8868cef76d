"""The config watcher and snapshot swap, in process, with a throwaway adapter that can hold a request.

The adapter is a fake only so a test can keep a request in flight across a reload; the
gateway, the chain, the watcher and the files are the real ones.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from adapters.local import LocalAdapter
from core import hookimpl
from core.adapters import Adapter, EmbedResult, RerankResult
from core.config import Settings
from core.dialects import ParseLimits
from core.dialects.openai import OpenAIEmbeddings
from core.errors import ConfigError
from core.flow import Flow
from core.gateway import Gateway
from core.plugins import build_plugin_manager
from core.reload import ConfigWatcher
from tests.support.config_cases import BAD_CASES, configmap_publish, good_texts, write_good, write_text
from tests.support.configs import copy_default_configs, read_yaml, write_yaml

GATE = "gate"


class GateAdapter(Adapter):
    """Answers with ones; while ``hold`` is set, a call waits until it is released. It stands in
    for ``local`` in the shared config cases, so it takes the same options."""

    upstream_options = LocalAdapter.upstream_options

    def __init__(self, upstream, context):
        super().__init__(upstream, context)
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.closed = False

    async def embed(self, route, inputs, flow):
        assert not self.closed, "called after close"
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        assert not self.closed, "closed while a request was in flight"
        return EmbedResult(np.ones((len(inputs), 4), dtype=np.float32))

    async def rerank(self, route, query, documents, flow):
        return RerankResult([0.0] * len(documents))

    async def close(self):
        self.closed = True


class GatePlugin:
    def __init__(self):
        self.adapters: list[GateAdapter] = []

    @hookimpl
    def register_adapters(self, register):
        made = self.adapters

        class Recorded(GateAdapter):  # every instance the gateway makes, in order
            def __init__(self, upstream, context):
                super().__init__(upstream, context)
                made.append(self)

        register(GATE, Recorded)


def _gateway(config_dir, interval_s: float = 5.0) -> tuple[Gateway, GatePlugin]:
    pm = build_plugin_manager(entry_points=False)
    plugin = GatePlugin()
    pm.register(plugin, name="gate-test")
    settings = Settings(routing_path=str(config_dir / "routing.yaml"), auth_path=str(config_dir / "auth.yaml"),
                        rate_limits_path=str(config_dir / "rate_limits.yaml"), reload_interval_s=interval_s)
    return Gateway(settings, pm), plugin


def _count(gw: Gateway, result: str) -> float:
    return gw.metrics.reloads.labels(result=result)._value.get()


def _flow(gw: Gateway, model: str) -> Flow:
    return Flow(kind="embeddings",
                request=OpenAIEmbeddings().parse({"model": model, "input": "hi"}, ParseLimits(8)).request,
                snapshot=gw.snapshot, request_id="test", client_ip="127.0.0.1", headers={})


async def _until(predicate, timeout: float = 20.0) -> None:
    """Wait for ``predicate``; the bound only keeps a broken build from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_polling_fallback_applies_a_change_without_file_events(tmp_path):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    gw, _ = _gateway(tmp_path)
    await gw.load()
    watcher = ConfigWatcher(gw, interval_s=0.1, use_events=False)
    watcher.start()
    try:
        digest = write_good(tmp_path, "minilm", "added", upstream_type=GATE)
        await _until(lambda: gw.snapshot.digest == digest)
        assert set(gw.snapshot.models) == {"minilm", "added"}
        assert _count(gw, "success") == 2 and _count(gw, "error") == 0
    finally:
        await watcher.stop()
        await gw.close()


async def test_events_pick_up_a_configmap_symlink_swap(tmp_path):
    configmap_publish(tmp_path, good_texts("minilm", upstream_type=GATE))
    gw, _ = _gateway(tmp_path)
    await gw.load()
    watcher = ConfigWatcher(gw, interval_s=3600)  # no polling tick can happen in this test: only events
    watcher.start()
    try:
        await asyncio.sleep(0.3)  # let the watch be set up before the swap
        configmap_publish(tmp_path, good_texts("minilm", "swapped", upstream_type=GATE))
        await _until(lambda: "swapped" in gw.snapshot.models)
        assert _count(gw, "error") == 0
    finally:
        await watcher.stop()
        await gw.close()


# The in-process gate adapter has no options to check: the bad-option case needs the real local one.
GATE_CASES = [c for c in BAD_CASES if c.name != "bad-adapter-option"]


@pytest.mark.parametrize("case", GATE_CASES, ids=[c.name for c in GATE_CASES])
async def test_bad_content_is_rejected_once_and_the_old_snapshot_serves(tmp_path, case, caplog):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    gw, _ = _gateway(tmp_path)
    good = await gw.load()
    watcher = ConfigWatcher(gw, use_events=False)
    write_text(tmp_path / case.file, case.text.replace('"local"', f'"{GATE}"'))
    for _ in range(3):  # the same bad content is tried once, not at every tick
        assert await watcher.check() is False
    assert _count(gw, "error") == 1
    assert gw.snapshot is good and gw.ready
    rejected = [r for r in caplog.records if r.getMessage().startswith("config rejected")]
    assert len(rejected) == 1
    assert (rejected[0].file, rejected[0].line) == (str(tmp_path / case.file), case.line)
    await gw.handle(flow := _flow(gw, "minilm"))
    assert flow.status == 200 and flow.outcome is not None and flow.outcome.vectors.shape == (1, 4)
    write_good(tmp_path, "minilm", "fixed", upstream_type=GATE)
    assert await watcher.check() is True and "fixed" in gw.snapshot.models
    await gw.close()


async def test_forced_reload_loads_unchanged_content(tmp_path):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    gw, _ = _gateway(tmp_path)
    first = await gw.load()
    watcher = ConfigWatcher(gw, interval_s=3600, use_events=False)
    watcher.start()
    try:
        watcher.request_reload()
        await _until(lambda: gw.snapshot is not first)
        assert gw.snapshot.digest == first.digest and _count(gw, "success") == 2
    finally:
        await watcher.stop()
        await gw.close()


async def test_unchanged_upstream_keeps_its_adapter_and_a_removed_one_drains(tmp_path):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    gw, plugin = _gateway(tmp_path)
    await gw.load()
    watcher = ConfigWatcher(gw, use_events=False)
    original = gw.snapshot.models["minilm"].adapter

    write_good(tmp_path, "minilm", "second", upstream_type=GATE)
    assert await watcher.check()
    assert gw.snapshot.models["minilm"].adapter is original and gw.snapshot.models["second"].adapter is original

    original.hold = asyncio.Event()
    in_flight = asyncio.create_task(gw.handle(flow := _flow(gw, "minilm")))
    await asyncio.wait_for(original.entered.wait(), 10)
    write_good(tmp_path, "minilm", max_batch_size=16, upstream_type=GATE)  # a new upstream: a new adapter
    assert await watcher.check()
    replacement = gw.snapshot.models["minilm"].adapter
    assert replacement is not original and len(plugin.adapters) == 2
    await gw.handle(after := _flow(gw, "minilm"))  # new requests go to the new adapter at once
    assert after.status == 200
    await asyncio.sleep(0.2)
    assert not original.closed, "closed while its request was in flight"
    original.hold.set()
    await asyncio.wait_for(in_flight, 10)
    assert flow.status == 200 and flow.outcome is not None
    await _until(lambda: original.closed)
    assert not replacement.closed
    await gw.close()
    assert replacement.closed


async def test_a_file_caught_between_truncate_and_write_is_not_loaded(tmp_path):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    gw, _ = _gateway(tmp_path)
    await gw.load()
    watcher = ConfigWatcher(gw, use_events=False)
    path = tmp_path / "routing.yaml"
    text = path.read_text().replace("minilm", "rewritten")

    async def write_in_place():  # as `cat new > routing.yaml` does: truncate, then write
        with open(path, "w") as f:
            f.flush()
            await asyncio.sleep(0.02)
            f.write(text)

    writer = asyncio.create_task(write_in_place())
    await asyncio.sleep(0.005)
    assert path.read_text() == ""  # an empty routing.yaml is valid: it would remove every model
    assert await watcher.check()
    await writer
    assert set(gw.snapshot.models) == {"rewritten"}
    assert _count(gw, "success") == 2 and _count(gw, "error") == 0  # the empty state was never loaded
    await gw.close()


async def test_rotating_a_key_file_is_a_config_change(tmp_path):
    write_good(tmp_path, "minilm", upstream_type=GATE)
    secret = tmp_path / "secret" / "api-key"
    secret.parent.mkdir()
    secret.write_text("old-key-1a2b\n")
    write_text(tmp_path / "auth.yaml", f"api_keys:\n  - name: team\n    key_file: {secret}\n")
    gw, _ = _gateway(tmp_path)
    await gw.load()
    watcher = ConfigWatcher(gw, use_events=False)
    assert gw.snapshot.files.auth.find("old-key-1a2b") is not None
    assert await watcher.check() is False  # nothing changed
    secret.write_text("new-key-3c4d\n")  # the Secret was rotated; auth.yaml itself is unchanged
    assert await watcher.check() is True
    assert gw.snapshot.files.auth.find("new-key-3c4d") is not None
    assert gw.snapshot.files.auth.find("old-key-1a2b") is None
    await gw.close()


async def test_a_local_model_leaves_memory_with_the_last_route_naming_it(tmp_path):
    from adapters.local import LocalAdapter

    created: list[LocalAdapter] = []

    class Recording(LocalAdapter):
        def __init__(self, upstream, context):
            super().__init__(upstream, context)
            created.append(self)

    configs = copy_default_configs(tmp_path)
    gw = Gateway(Settings(routing_path=str(configs / "routing.yaml"), auth_path=str(configs / "auth.yaml"),
                          rate_limits_path=str(configs / "rate_limits.yaml")))
    gw.registry.factories["local"] = Recording
    await gw.load()
    embedder, reranker = gw.snapshot.models["minilm"].adapter, gw.snapshot.models["rerank-base"].adapter
    assert embedder is not reranker and embedder._models and reranker._models

    routing = read_yaml(configs / "routing.yaml")
    rerank_routes = routing.pop("rerank")
    default_rerank = routing["defaults"].pop("rerank")  # a default naming a removed model is a config error
    routing["embeddings"].append({**routing["embeddings"][0], "model": "minilm-2"})
    write_yaml(configs / "routing.yaml", routing)
    await gw.load()
    assert gw.snapshot.models["minilm-2"].adapter is embedder, "two aliases of one model share it"
    await _until(lambda: not reranker._models)  # its route is gone: the model is released
    assert embedder._models and len(created) == 2

    # A reload that loads a new model and then fails leaves the old snapshot and releases that model.
    routing["defaults"]["rerank"] = default_rerank
    routing["rerank"] = rerank_routes + [{**rerank_routes[0], "model": "broken",
                                          "served_name": str(tmp_path / "no-such-model")}]
    write_yaml(configs / "routing.yaml", routing)
    with pytest.raises(ConfigError, match="cannot load cross-encoder"):
        await gw.load()
    assert set(gw.snapshot.models) == {"minilm", "minilm-2"}
    loaded_then_dropped = [a for a in created[2:] if a is not embedder]
    assert loaded_then_dropped, "the failed reload loaded the rerank model first"
    await _until(lambda: all(not a._models for a in loaded_then_dropped))
    await gw.close()
    assert not embedder._models
