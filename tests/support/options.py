"""Each option a route or an upstream may hold, changed alone: for the property tests that a
derived value (the cache key, the embedding space) moves exactly with the options declared to
move it, over every built-in adapter type and core's own route options."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from core.config import ModelRoute, UpstreamConfig
from core.options import Option, OptionSchema

SAMPLE = {int: 7, float: 7.5, str: "other", bool: False, list: ["x"]}  # a value no default has


@dataclass(frozen=True)
class Changed:
    where: str  # "upstream" or "route"
    type_name: str
    option: Option
    base: ModelRoute  # the route with every option at its default
    route: ModelRoute  # the same route with only ``option`` changed
    upstream_schema: OptionSchema
    route_schema: OptionSchema


def each_option_changed(gateway) -> Iterator[Changed]:
    for type_name, cls in gateway.registry.factories.items():
        upstream_schema, route_schema = cls.upstream_options, cls.route_options | gateway.route_options
        base = ModelRoute(alias="m", kind="embeddings", served_name="m", enabled=True,
                          upstream=UpstreamConfig(type=type_name))
        for where, schema in (("upstream", upstream_schema), ("route", route_schema)):
            for option in schema:
                value = option.choices[-1] if option.choices else SAMPLE[option.type]
                if where == "upstream":
                    route = replace(base, upstream=replace(base.upstream, options={option.name: value}))
                else:
                    route = replace(base, options={option.name: value})
                yield Changed(where, type_name, option, base, route, upstream_schema, route_schema)
