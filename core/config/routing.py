"""routing.yaml: which model aliases exist, and which upstream serves each."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.config.yamlfile import LineDict, expect, shown
from core.kinds import EMBEDDINGS, KINDS, RERANK, Kind
from core.options import Option, OptionSchema

# The fields core owns, declared once: the parser refuses any other key, and
# ``core.fields`` documents them beside the adapters' and plugins' options.
TOP_LEVEL_FIELDS = OptionSchema([
    Option("embeddings", list, [], "the embedding models"),
    Option("rerank", list, [], "the rerank models"),
    Option("feature_flags", list, [], "flags to turn on (reloadable), besides ROUTER_FEATURE_FLAGS"),
    Option("defaults", dict, {}, "the model for requests that name none (TEI's /embed, /rerank, /tokenize): "
                                 "{embeddings: <alias>, rerank: <alias>}"),
])
INPUT_TYPES = ("query", "document", "classification", "clustering")
_SAME = {t: "" for t in INPUT_TYPES}
#: Each model family's prompts by input type, as its authors trained it.
PROMPT_PRESETS: dict[str, dict[str, str]] = {
    "none": _SAME,  # symmetric models that take no prompt: MiniLM, bge-m3
    "e5": {"query": "query: ", "document": "passage: ", "classification": "query: ", "clustering": "query: "},
    "bge": {**_SAME, "query": "Represent this sentence for searching relevant passages: "},  # bge v1.5 (en)
    "frida": {"query": "search_query: ", "document": "search_document: ", "classification": "categorize: ",
              "clustering": "categorize_topic: "},
    "qwen3": {**_SAME, "query": "Instruct: Given a web search query, retrieve relevant passages that answer "
                                "the query\nQuery:"},
}
TRUNCATIONS = ("error", "end", "start")
CL100K = "cl100k_base"  # OpenAI's encoding: what its clients mean by token ids
TOKEN_ID_KINDS = (CL100K, "model")
ROUTE_FIELDS = OptionSchema([
    Option("model", str, None, "the alias clients send as 'model' (required)"),
    Option("served_name", str, None, "the name the upstream knows the model by (default: the alias)"),
    Option("enabled", bool, True, "a disabled model answers 404 and is listed only with "
                                  "ROUTER_ALLOW_DISABLED_MODELS"),
    Option("upstream", dict, None, "where requests go (required); see the upstream fields"),
    Option("max_top_k", int, None, "rerank only: the most results one request gets", minimum=1),
    Option("allow_dimensions", bool, True, "whether requests may ask for fewer 'dimensions'"),
    Option("tokenizer", str, None, "the tokenizer that counts this model's tokens (a folder or cached id)"),
    Option("owned_by", str, "quadrate", "shown in /v1/models"),
    Option("options", dict, {}, "per-route options of the upstream type and of plugins"),
    Option("prompts", dict, None, "embeddings: a preset (none, e5, bge, frida, qwen3) or the text put before "
                                  f"inputs of each input type ({', '.join(INPUT_TYPES)}), with optional preset: "
                                  "and default: (the input type of requests that name none); a request's "
                                  "input_type (Cohere, Voyage, Jina task) must be one of them"),
    Option("max_input_tokens", int, None, "the model's input limit in tokens; requests that forbid "
                                          "truncation are refused above it", minimum=1),
    Option("truncation", str, None, "over the model's input limit: error (400, embeddings' default), end (cut "
                                    "the end; rerank's default) or start (embeddings only); a request's own "
                                    "choice (Cohere truncate, Voyage truncation, TEI truncate) wins",
           choices=TRUNCATIONS),
    Option("dimensions", int, None, "embeddings: the width the model answers; another width from the "
                                    "upstream is a 502 (undeclared: the loaded model's, else the first answer's)",
           minimum=1),
    Option("token_ids", str, CL100K, "embeddings: what token-id inputs are: cl100k_base (what OpenAI "
                                            "clients send; decoded to text) or the model's own vocabulary",
           choices=TOKEN_ID_KINDS),
])
UPSTREAM_FIELDS = OptionSchema([
    Option("type", str, None, "the adapter type (required): local, infinity, rerank, qwen3 or a plugin's"),
    Option("url", str, None, "the upstream's base URL (HTTP types)"),
    Option("urls", list, None, "several base URLs, balanced with failover (HTTP types)"),
    Option("timeout_ms", float, None, "per-request timeout (default ROUTER_REQUEST_TIMEOUT_SECONDS)"),
    Option("timeout_seconds", float, None, "the same in seconds"),
])
_ROUTE_KEYS = set(ROUTE_FIELDS.options)
_UPSTREAM_KEYS_COMMON = set(UPSTREAM_FIELDS.options)


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
    prompts: Mapping[str, str] | None = None
    max_input_tokens: int | None = None
    token_ids: str = CL100K
    dimensions: int | None = None
    truncation: str | None = None  # None: the kind's default (error for embeddings, end for rerank)
    line: int = field(default=0, compare=False)  # where the entry starts in routing.yaml
    # line of each field: "served_name", "upstream.retries", "options.model_path", ...
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def line_of(self, field_path: str) -> int:
        return self.lines.get(field_path, self.line)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    routes: Mapping[str, ModelRoute]
    feature_flags: tuple[str, ...] = ()
    defaults: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # kind -> alias


def _parse_upstream(entry: LineDict, known_types: Collection[str] | None) -> UpstreamConfig:
    up = expect(entry, "upstream", dict)
    utype = expect(up, "type", str)
    if known_types is not None and utype not in known_types:
        raise up.fail(f"unknown upstream type {utype!r}; known: {', '.join(sorted(known_types))} (a plugin "
                      "installed while the gateway runs is loaded at its next start: restart it)", "type")
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
    if kind == RERANK and "max_top_k" in entry:
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
        prompts=_prompts(entry, kind),
        max_input_tokens=_positive(entry, "max_input_tokens"),
        token_ids=_choice(entry, "token_ids", TOKEN_ID_KINDS, CL100K),
        dimensions=_positive(entry, "dimensions"),
        truncation=_truncation(entry, kind),
        line=entry.line,
        lines=MappingProxyType(lines),
    )


def _choice(entry: LineDict, key: str, choices: tuple[str, ...], default: str) -> str:
    value = expect(entry, key, str, required=False, default=default)
    if value not in choices:
        raise entry.fail(f"'{key}' must be one of {', '.join(choices)}, got {shown(value)}", key)
    return value


def _truncation(entry: LineDict, kind: Kind) -> str | None:
    if "truncation" not in entry:
        return None
    value = _choice(entry, "truncation", TRUNCATIONS, "error")
    if kind == RERANK and value == "start":
        raise entry.fail("'truncation: start' is for embedding models (a rerank pair keeps its query)", "truncation")
    return value


def _positive(entry: LineDict, key: str) -> int | None:
    if key not in entry:
        return None
    value = expect(entry, key, int)
    if value < 1:
        raise entry.fail(f"'{key}' must be at least 1", key)
    return value


def _prompts(entry: LineDict, kind: Kind) -> Mapping[str, str] | None:
    """A preset name, or a mapping of input types to prompts (``preset:`` starts from one;
    ``default:`` names the input type a request without one gets)."""
    if "prompts" not in entry:
        return None
    if kind != EMBEDDINGS:
        raise entry.fail("'prompts' is for embedding models", "prompts")
    value = entry["prompts"]
    if isinstance(value, str):
        value = {"preset": value}
        where: LineDict = entry
    else:
        where = expect(entry, "prompts", dict)
    out: dict[str, str] = {}
    for name, text in value.items():
        if name == "preset":
            if text not in PROMPT_PRESETS:
                raise where.fail(f"unknown prompt preset {text!r} (known: {', '.join(PROMPT_PRESETS)})",
                                 "prompts" if where is entry else name)
            out = {**PROMPT_PRESETS[text], **out}
        elif name == "default":
            if text not in INPUT_TYPES:
                raise where.fail(f"'default' must name an input type ({', '.join(INPUT_TYPES)})", name)
            out[name] = text
        elif name not in INPUT_TYPES:
            raise where.fail(f"unknown input type {name!r} in 'prompts' (known: {', '.join(INPUT_TYPES)}, "
                             "preset, default)", name)
        elif not isinstance(text, str):
            raise where.fail(f"the prompt for {name!r} must be a string ('' for none)", name)
        else:
            out[name] = text
    if "default" in out and out["default"] not in out:
        raise where.fail(f"'default' names {out['default']!r}, which has no prompt here", "default")
    return MappingProxyType(out)


def _defaults(doc: LineDict, routes: Mapping[str, ModelRoute]) -> Mapping[str, str]:
    defaults = expect(doc, "defaults", dict, required=False, default={})
    for kind, alias in defaults.items():
        if kind not in KINDS:
            raise defaults.fail(f"'defaults' takes embeddings and rerank, not {kind!r}", kind)
        route = routes.get(alias) if isinstance(alias, str) else None
        if route is None or route.kind != kind:
            raise defaults.fail(f"the default {kind} model {alias!r} is not a model of this file's {kind} list", kind)
    return MappingProxyType(dict(defaults))


def parse_routing(doc: LineDict, known_types: Collection[str] | None = None) -> RoutingConfig:
    unknown = set(doc) - set(TOP_LEVEL_FIELDS.options)
    if unknown:
        key = sorted(unknown)[0]
        raise doc.fail(f"unknown top-level key {key!r} (expected {', '.join(TOP_LEVEL_FIELDS.options)})", key)
    routes: dict[str, ModelRoute] = {}
    for kind in Kind:
        entries = expect(doc, kind, list, required=False, default=[])
        for entry in entries:
            route = _parse_route(entry, kind, known_types, doc)
            if route.alias in routes:
                raise entry.fail(f"duplicate model alias {route.alias!r}", "model")
            routes[route.alias] = route
    flags = expect(doc, "feature_flags", list, required=False, default=[])
    if not all(isinstance(f, str) for f in flags):
        raise doc.fail("'feature_flags' must be a list of strings", "feature_flags")
    return RoutingConfig(routes=MappingProxyType(routes), feature_flags=tuple(flags),
                         defaults=_defaults(doc, routes))
