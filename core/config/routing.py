"""routing.yaml: which model aliases exist, and which upstream serves each."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from core.config.yamlfile import LineDict, expect

Kind = Literal["embeddings", "rerank"]

_ROUTE_KEYS = {"model", "served_name", "enabled", "upstream", "max_top_k", "allow_dimensions",
               "tokenizer", "owned_by", "options"}
_UPSTREAM_KEYS_COMMON = {"type", "url", "urls", "timeout_ms", "timeout_seconds"}


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Where requests for a model go. Two equal configs share one adapter (and its pool)."""

    type: str
    urls: tuple[str, ...] = ()
    timeout_s: float | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> str:
        return json.dumps([self.type, self.urls, self.timeout_s, dict(self.options)],
                          sort_keys=True, default=str)

    def __hash__(self) -> int:  # options is a read-only mapping; hash its canonical form
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UpstreamConfig) and self.key == other.key


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    kind: Kind
    served_name: str
    enabled: bool
    upstream: UpstreamConfig
    max_top_k: int | None = None
    allow_dimensions: bool = True
    tokenizer: str | None = None
    owned_by: str = "quadrate"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    line: int = field(default=0, compare=False)  # where the entry starts in routing.yaml
    # line of each field: "served_name", "upstream.retries", "options.model_path", ...
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def line_of(self, field_path: str) -> int:
        return self.lines.get(field_path, self.line)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    routes: Mapping[str, ModelRoute]
    feature_flags: tuple[str, ...] = ()


def _parse_upstream(entry: LineDict, known_types: Collection[str] | None) -> UpstreamConfig:
    up = expect(entry, "upstream", dict)
    utype = expect(up, "type", str)
    if known_types is not None and utype not in known_types:
        raise up.fail(f"unknown upstream type {utype!r}; known: {', '.join(sorted(known_types))}", "type")
    urls: list[str] = []
    if "url" in up:
        urls.append(expect(up, "url", str))
    if "urls" in up:
        extra = expect(up, "urls", list)
        if not extra or not all(isinstance(u, str) and u for u in extra):
            raise up.fail("'urls' must be a non-empty list of strings", "urls")
        urls.extend(extra)
    for u in urls:
        if not u.startswith(("http://", "https://")):
            shown = u.rpartition("@")[2]  # never echo a user:password part into logs
            raise up.fail(f"upstream url must start with http:// or https://, got {shown!r}", "url")
    timeout_s = None
    if "timeout_ms" in up:
        timeout_s = expect(up, "timeout_ms", (int, float)) / 1000.0
    if "timeout_seconds" in up:
        timeout_s = float(expect(up, "timeout_seconds", (int, float)))
    if timeout_s is not None and timeout_s <= 0:
        raise up.fail("upstream timeout must be positive", "timeout_ms" if "timeout_ms" in up else "timeout_seconds")
    options = {k: v for k, v in up.items() if k not in _UPSTREAM_KEYS_COMMON}
    return UpstreamConfig(type=utype, urls=tuple(u.rstrip("/") for u in urls), timeout_s=timeout_s,
                          options=MappingProxyType(_plain(options)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _parse_route(entry: Any, kind: Kind, known_types: Collection[str] | None, doc: LineDict) -> ModelRoute:
    if not isinstance(entry, LineDict):
        raise doc.fail(f"each entry under {kind!r} must be a mapping", kind)
    unknown = set(entry) - _ROUTE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise entry.fail(f"unknown field {key!r} in model entry", key)
    alias = expect(entry, "model", str)
    if not alias.strip():
        raise entry.fail("'model' must not be empty", "model")
    max_top_k = None
    if kind == "rerank" and "max_top_k" in entry:
        max_top_k = expect(entry, "max_top_k", int)
        if max_top_k < 1:
            raise entry.fail("'max_top_k' must be at least 1", "max_top_k")
    enabled = expect(entry, "enabled", bool, required=False, default=True)
    options = expect(entry, "options", dict, required=False, default={})
    lines = {k: entry.line_of(k) for k in entry}
    for prefix in ("upstream", "options"):
        block = entry.get(prefix)
        if isinstance(block, LineDict):
            lines.update({f"{prefix}.{k}": block.line_of(k) for k in block})
    return ModelRoute(
        alias=alias, kind=kind,
        served_name=expect(entry, "served_name", str, required=False, default=alias),
        enabled=enabled,
        upstream=_parse_upstream(entry, known_types),
        max_top_k=max_top_k,
        allow_dimensions=expect(entry, "allow_dimensions", bool, required=False, default=True),
        tokenizer=expect(entry, "tokenizer", str, required=False),
        owned_by=expect(entry, "owned_by", str, required=False, default="quadrate"),
        options=MappingProxyType(_plain(options)),
        line=entry.line,
        lines=MappingProxyType(lines),
    )


def parse_routing(doc: LineDict, known_types: Collection[str] | None = None) -> RoutingConfig:
    unknown = set(doc) - {"embeddings", "rerank", "feature_flags"}
    if unknown:
        key = sorted(unknown)[0]
        raise doc.fail(f"unknown top-level key {key!r} (expected embeddings, rerank, feature_flags)", key)
    routes: dict[str, ModelRoute] = {}
    for kind in ("embeddings", "rerank"):
        entries = expect(doc, kind, list, required=False, default=[])
        for entry in entries:
            route = _parse_route(entry, kind, known_types, doc)
            if route.alias in routes:
                raise entry.fail(f"duplicate model alias {route.alias!r}", "model")
            routes[route.alias] = route
    flags = expect(doc, "feature_flags", list, required=False, default=[])
    if not all(isinstance(f, str) for f in flags):
        raise doc.fail("'feature_flags' must be a list of strings", "feature_flags")
    return RoutingConfig(routes=MappingProxyType(routes), feature_flags=tuple(flags))
