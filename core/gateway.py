"""The gateway's long-lived state: plugins, adapters, the chain, the model services and the
serving snapshot.

A snapshot (``core.snapshot``) holds every route's served model (``core.served``). Building
one validates everything first; only then is it swapped in, so a request sees one snapshot
from start to end and a bad config never replaces a good one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import logging
import time
from collections.abc import Hashable
from types import MappingProxyType

import pluggy

from core.adapters import AdapterContext, AdapterRegistry
from core.chain import Chain, ChainBuilder
from core.config import ConfigFiles, LimitsSection, ModelRoute, Settings, load_config
from core.config.limits import owners as limits_owners
from core.config.sections import SettingsSection
from core.dialects import CodecRegistry
from core.errors import ConfigError, GatewayError
from core.flow import Flow
from core.metrics import GatewayMetrics
from core.offload import INLINE_VALUES, answer_size, off_loop
from core.options import Option, OptionError, OptionSchema
from core.plugins import Hooks, build_plugin_manager
from core.routes import RouteTable
from core.running import UsageMeter
from core.scheduling.policy import SECTION as POLICY_SECTION
from core.scheduling.queues import ROUTE_OPTIONS as QUEUE_OPTIONS
from core.scheduling.tenants import Tenants
from core.served import ModelServices, ServedModel
from core.snapshot import Snapshot
from core.space import ROUTE_OPTIONS as SPACE_OPTIONS
from core.tokenization import counter_for

log = logging.getLogger("maas.gateway")


def read_sections(hooks: Hooks, settings: Settings) -> dict[type, object]:
    """Every plugin's settings section read from ``settings.environ`` (a section the caller put in
    ``settings.sections`` itself is kept); two plugins declaring one variable is a startup error."""
    declared: list[tuple[str, SettingsSection]] = []
    hooks.register_settings(lambda origin, builtin: lambda section: declared.append((origin, section)))
    owners: dict[str, str] = {}
    for origin, section in declared:
        for option in section.options:
            held = owners.setdefault(option.env, origin)
            if held != origin:
                raise ConfigError(f"{option.env} is declared by both {held} and {origin}")
    given = settings.sections
    return {s.cls: given[s.cls] if s.cls in given else s.read(settings.environ) for _, s in declared}


class Gateway:
    def __init__(self, settings: Settings, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or build_plugin_manager(settings.disabled_plugins)
        self.hooks = Hooks(self.pm)
        sections = read_sections(self.hooks, settings)  # the plugins' own variables, read once here
        settings = dataclasses.replace(settings, sections=sections, environ={})
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.registry = AdapterRegistry(AdapterContext(settings=settings, metrics=self.metrics))
        self.hooks.register_adapters(self.registry.registrar)
        self.codecs = CodecRegistry()
        self.hooks.register_codecs(self.codecs.registrar)
        self.routes = RouteTable()  # plugins' own HTTP routes (the bulk-job API)
        self.meter: UsageMeter | None = None  # a quota plugin's, for work outside a request (bulk jobs)
        self.hooks.register_routes(self.routes.registrar)
        self.known_flags: dict[str, str] = {}
        self.hooks.register_feature_flags(self.known_flags.__setitem__)  # (name, description)
        plugin_options: list[Option] = [*QUEUE_OPTIONS, *SPACE_OPTIONS]  # the scheduler's, the space's
        self.hooks.register_route_options(plugin_options.append)
        self.limits: list[LimitsSection] = [POLICY_SECTION]  # rate_limits.yaml's owners: the scheduler, plugins
        self.hooks.register_limits(self.limits.append)
        limits_owners(self.limits)  # two owners of one part: a startup error
        self.route_options = OptionSchema(plugin_options)  # route ``options:`` entries core and plugins own
        self.services = ModelServices(settings, self.metrics)
        self.hooks.register_embed_layers(self.services.registrar, settings, self.metrics)
        builder = ChainBuilder()
        self.hooks.register_stages(builder, settings, self.metrics)
        self.chain: Chain = builder.build()
        self.snapshot: Snapshot | None = None
        self.draining = False
        self.loaded = asyncio.Event()  # set once the first snapshot serves
        self._load_lock = asyncio.Lock()
        self._rejected = 0  # loads rejected since the last good one
        self._retiring: set[asyncio.Future] = set()
        self._check_flags(settings.feature_flags, "ROUTER_FEATURE_FLAGS")

    def _check_flags(self, flags: tuple[str, ...], source: str, files: ConfigFiles | None = None) -> None:
        unknown = [f for f in flags if f not in self.known_flags]
        if unknown:
            raise ConfigError(f"unknown feature flag(s) in {source}: {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(self.known_flags)) or 'none'}",
                              file=self.settings.routing_path if files is not None else None)

    @property
    def ready(self) -> bool:
        return self.snapshot is not None and not self.draining

    def validate(self) -> ConfigFiles:
        """Parse and validate the config files; raise ConfigError. Changes nothing.

        Each route is checked against its adapter type (kind, upstream options, route
        options, ``validate_route``); the files come back with every option's default filled in.
        """
        files = load_config(self.settings, known_types=self.registry.factories.keys(), limits=self.limits)
        self._check_flags(files.routing.feature_flags, "routing.yaml feature_flags", files)
        routes = {alias: self.check_route(route) for alias, route in files.routing.routes.items()}
        if not routes:
            log.warning("routing config has no models: every model request will answer 404",
                        extra={"file": self.settings.routing_path})
        routing = dataclasses.replace(files.routing, routes=MappingProxyType(routes))
        return dataclasses.replace(files, routing=routing)

    def findings(self, files: ConfigFiles) -> list[ConfigError]:
        """What would keep the config from serving as meant, found without loading anything (file and
        line each): a model that is not on this machine, a key naming a model routing.yaml lacks.
        ``maas check-config`` fails on them; a live reload logs them (a key may name a model a
        later save adds)."""
        found: list[ConfigError] = []
        routes = files.routing.routes
        for route in routes.values():
            for field_path, message in self.registry.factories[route.upstream.type].findings(route):
                found.append(ConfigError(message, file=self.settings.routing_path, line=route.line_of(field_path)))
        for key in files.auth.keys:
            for alias in sorted(key.models or ()):
                if alias not in routes:
                    near = difflib.get_close_matches(alias, list(routes), n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else f"; models: {', '.join(sorted(routes))}"
                    found.append(ConfigError(f"api key {key.name!r} names model {alias!r}, which routing.yaml does "
                                             f"not have{hint}", file=self.settings.auth_path, line=key.line))
        return found

    def check_route(self, route: ModelRoute) -> ModelRoute:
        """``route`` with its options checked and defaulted by its adapter type; ConfigError
        (file, line of the offending field) otherwise."""
        cls = self.registry.factories[route.upstream.type]
        field_path = "upstream.type"
        try:
            if route.kind not in cls.kinds:
                raise ValueError(f"upstream type {route.upstream.type!r} serves {' and '.join(sorted(cls.kinds))} "
                                 f"models only, not {route.kind}")
            field_path = "upstream"
            upstream = dataclasses.replace(route.upstream, options=MappingProxyType(
                cls.upstream_options.check(route.upstream.options, f"upstream type {route.upstream.type!r}")))
            field_path = "options"
            options = (cls.route_options | self.route_options).check(
                route.options, f"the options of a route on upstream type {route.upstream.type!r}")
            checked = dataclasses.replace(route, upstream=upstream, options=MappingProxyType(options))
            field_path = ""
            cls.validate_route(checked)
        except (ValueError, TypeError, ConfigError) as exc:
            message = exc.message if isinstance(exc, ConfigError) else str(exc)
            if isinstance(exc, OptionError):
                field_path = f"{field_path}.{exc.field}"
            raise ConfigError(f"model {route.alias!r}: {message}", file=self.settings.routing_path,
                              line=route.line_of(field_path)) from exc
        return checked

    async def build_snapshot(self, files: ConfigFiles) -> Snapshot:
        flags = frozenset(self.settings.feature_flags) | frozenset(files.routing.feature_flags)
        models: dict[str, ServedModel] = {}
        for alias, route in files.routing.routes.items():
            cls = self.registry.factories[route.upstream.type]
            if not cls.is_enabled(self.settings):
                continue  # e.g. qwen3 without QWEN3_ENABLED: its models do not exist
            adapter = self.registry.instance(route)
            if route.enabled:
                await adapter.prepare(route)
            counter = counter_for([route.tokenizer, self.settings.tokenizer_name, adapter.tokenizer_name(route),
                                   route.served_name])
            models[alias] = self.services.serve(route, adapter, counter, flags,
                                                upstream_schema=cls.upstream_options,
                                                route_schema=cls.route_options | self.route_options)
        tenants = Tenants(files.rate_limits.resolve(POLICY_SECTION.name, files.auth)[0])
        return Snapshot(files=files, models=MappingProxyType(models), tenants=tenants, flags=flags)

    async def load(self) -> Snapshot:
        """Validate, build and swap in a new snapshot. On any error the old one stays.

        Loads run one at a time. Adapters no snapshot uses any more close in the background
        once their in-flight requests end, so a slow request never holds up the next load.
        """
        async with self._load_lock:
            return await self._load()

    async def _load(self) -> Snapshot:
        began = time.perf_counter()
        try:
            # parsing and validating grow with the files: off the event loop; the swap stays on it
            files = await off_loop(self.validate)
            for finding in await off_loop(self.findings, files):
                log.warning("config finding: %s", finding.message, extra={"file": finding.file, "line": finding.line})
            snapshot = await self.build_snapshot(files)
        except Exception as exc:
            self._rejected += 1
            self.metrics.reloads.labels(result="error").inc()
            if isinstance(exc, ConfigError):
                log.error("config rejected: %s", exc, extra={"file": exc.file, "line": exc.line})
            else:
                log.exception("config rejected")
            self._retire_unused()
            raise
        previous, self.snapshot = self.snapshot, snapshot
        self.loaded.set()
        if self._rejected:  # the operator's fix took: say so, as loudly as the rejection was said
            log.info("config accepted again after %d rejected load(s)", self._rejected,
                     extra={"digest": snapshot.digest, "rejected": self._rejected})
            self._rejected = 0
        self.metrics.reloads.labels(result="success").inc()
        self.metrics.config_swapped(snapshot.digest, snapshot.loaded_at)
        log.info("config loaded", extra={"digest": snapshot.digest, "models": sorted(snapshot.models),
                                         "seconds": round(time.perf_counter() - began, 2)})
        try:
            await self.hooks.config_changed(snapshot, previous)
        except Exception:  # the new snapshot already serves; a plugin's failure must not undo that
            log.exception("a config_changed hook failed")
        self._retire_unused()
        return snapshot

    def _retire_unused(self) -> None:
        self._keep_serving_queues()
        closing = self.registry.retire_unused(self._in_use())
        if not closing.done():
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)
            closing.add_done_callback(lambda _: self._keep_serving_queues())  # their queues are idle now

    def _keep_serving_queues(self) -> None:
        self.services.keep_only(self.snapshot.models.values() if self.snapshot else ())

    def _in_use(self) -> set[Hashable]:
        return {self.registry.key(m.route) for m in self.snapshot.models.values()} if self.snapshot else set()

    async def handle(self, flow: Flow) -> None:
        """Run the chain over one flow; record metrics; tell observers."""
        self.metrics.inflight.value += 1  # the gauge's ``inc``, inline: on every request
        # Pin the snapshot before any stage can suspend: a reload that drops one of its
        # adapters then closes it only after this request ends.
        self.registry.pin(flow.snapshot)
        try:
            await self.chain.run(flow)
            if flow.response is None and flow.outcome is not None and flow.codec is not None:
                # the chain's typed outcome in the wire format of the body it parsed; a big one
                # (many vectors as lists or base64, many tokens) off the event loop, in its timeout
                render = flow.codec.render
                flow.big_answer = answer_size(flow.outcome) >= INLINE_VALUES
                if not flow.big_answer:
                    flow.response = render(flow.request, flow.wire, flow.outcome)
                else:
                    flow.response = await off_loop(render, flow.request, flow.wire, flow.outcome,
                                                   deadline=self.deadline(flow))
                flow.response_headers.update(flow.codec.headers(flow.outcome))
        except GatewayError as exc:
            flow.error = exc
            flow.status = exc.status
            raise
        except asyncio.CancelledError:  # the client left (or the process stops): nobody reads an answer
            flow.status = 499
            raise
        except Exception as exc:
            flow.error = exc
            flow.status = 500
            raise
        finally:
            self.metrics.inflight.value -= 1
            self.registry.unpin(flow.snapshot)
            self._observe(flow)
            self.hooks.request_finished(flow)

    def deadline(self, flow: Flow) -> float:
        """The loop time by which the gateway must be done with ``flow`` (its model's timeout)."""
        return flow.deadline(flow.model.facts.timeout_s if flow.model is not None else self.settings.request_timeout_s)

    def _observe(self, flow: Flow) -> None:
        model = flow.model.alias if flow.model is not None else "unknown"
        req = flow.request  # None when the body never parsed
        inputs = req.item_count if req is not None else 0
        tokens = flow.usage_tokens
        self.metrics.request_done(flow.kind, model, flow.status, time.perf_counter() - flow.started, tokens, inputs)
        if flow.status == 200 and flow.model is not None:
            caller = flow.caller
            key = caller.name if caller is not None and not caller.anonymous else "anonymous"
            self.metrics.usage(key, model, inputs, tokens)

    async def close(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring)
        await self.services.close()
        await self.registry.close_all()
