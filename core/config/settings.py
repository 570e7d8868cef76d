"""Core's process settings from the environment (the ROUTER_* variables of the deployment guide).

Plugins declare their own variables (``core.config.sections``); their values are read into
``sections`` and reached with ``Settings.of``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from core.config.caps import InputCaps
from core.errors import ConfigError

T = TypeVar("T")


def bool_env(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def number(env: Mapping[str, str], name: str, cast: type, default, *, minimum: float = 0):
    """``env[name]`` as ``cast`` (int or float), or ``default`` when unset; a ConfigError naming
    the variable when it is not a finite number >= ``minimum``, not a traceback at startup."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if cast is int else 'a number'}, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a finite number >= {minimum:g}, got {raw!r}")
    return value


def redis_url_env(env: Mapping[str, str], name: str) -> str | None:
    """A Redis URL, checked at start (a bad one is a config error, not a traceback at first use).
    The message never echoes it: it may hold a password."""
    url = env.get(name) or None
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{name}: the port is not a number") from None
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL with a host")
    return url


def list_env(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def caps_from_env(e: Mapping[str, str]) -> InputCaps:
    d = InputCaps()
    return InputCaps(
        tokenize_chars=number(e, "ROUTER_MAX_TOKENIZE_CHARS", int, d.tokenize_chars, minimum=1),
        tokenize_tokens=number(e, "ROUTER_MAX_TOKENIZE_TOKENS", int, d.tokenize_tokens, minimum=1),
        query_chars=number(e, "ROUTER_MAX_QUERY_CHARS", int, d.query_chars, minimum=1),
        rerank_chars=number(e, "ROUTER_MAX_RERANK_CHARS", int, d.rerank_chars, minimum=1),
        rerank_pairs=number(e, "ROUTER_MAX_RERANK_PAIRS", int, d.rerank_pairs, minimum=1),
        token_ids_per_input=number(e, "ROUTER_MAX_TOKEN_IDS_PER_INPUT", int, d.token_ids_per_input, minimum=1),
        token_ids_per_request=number(e, "ROUTER_MAX_TOKEN_IDS_PER_REQUEST", int, d.token_ids_per_request, minimum=1),
    )


@dataclass(frozen=True)
class Settings:
    routing_path: str = "configs/routing.yaml"
    auth_path: str = "configs/auth.yaml"
    rate_limits_path: str = "configs/rate_limits.yaml"
    request_timeout_s: float = 30.0
    allow_disabled_models: bool = False
    reload_interval_s: float = 5.0
    tokenizer_name: str | None = None
    feature_flags: tuple[str, ...] = ()
    max_body_bytes: int = 16 * 1024 * 1024
    max_inputs: int = 2048
    redis_url: str | None = field(default=None, repr=False)
    body_timeout_s: float = 30.0  # a request body must arrive within this
    header_timeout_s: float = 30.0  # a request head must arrive within this of connecting or of the last answer
    lean_lane: bool = True  # the API port's common requests read by the lean lane (core.lane), not aiohttp's app
    drain_s: float = 5.0  # after SIGTERM: keep serving, readiness 503, before the listener closes
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API ("*" for any); none: CORS off
    metrics_port: int | None = None  # /metrics on this port only (same host), not the API's; none: on the API's
    disabled_plugins: tuple[str, ...] = ()
    log_level: str = "INFO"
    max_config_bytes: int = 4 * 1024 * 1024  # a config file over this is refused before it is parsed
    max_config_items: int = 10_000  # entries of one list or mapping in a config file (routes, keys, flags)
    caps: InputCaps = InputCaps()  # what one request may make the gateway read (core.config.caps)
    # The process environment, for the sections plugins declare (core.config.sections), and
    # those sections read from it: ``of(cls)``. Filled by the gateway once plugins are loaded.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    sections: Mapping[type, Any] = field(default_factory=dict, repr=False, compare=False)

    def of(self, cls: type[T]) -> T:
        """The typed settings of a plugin's section (``cls`` is its dataclass)."""
        try:
            return self.sections[cls]
        except KeyError:
            raise LookupError(f"no settings section {cls.__name__} was registered "
                              "(register_settings) or the gateway has not read them yet") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return cls(
            routing_path=e.get("ROUTER_ROUTING_PATH", cls.routing_path),
            auth_path=e.get("ROUTER_AUTH_PATH", cls.auth_path),
            rate_limits_path=e.get("ROUTER_RATE_LIMITS_PATH", cls.rate_limits_path),
            request_timeout_s=number(e, "ROUTER_REQUEST_TIMEOUT_SECONDS", float, cls.request_timeout_s, minimum=0.001),
            allow_disabled_models=bool_env(e.get("ROUTER_ALLOW_DISABLED_MODELS"), False),
            reload_interval_s=number(e, "ROUTER_ROUTING_RELOAD_INTERVAL_SECONDS", float, cls.reload_interval_s,
                                     minimum=0.05),
            tokenizer_name=e.get("ROUTER_TOKENIZER_NAME") or None,
            feature_flags=list_env(e.get("ROUTER_FEATURE_FLAGS")),
            max_body_bytes=number(e, "ROUTER_MAX_BODY_BYTES", int, cls.max_body_bytes, minimum=1),
            max_inputs=number(e, "ROUTER_MAX_INPUTS", int, cls.max_inputs, minimum=1),
            redis_url=redis_url_env(e, "ROUTER_REDIS_URL"),
            cors_origins=list_env(e.get("ROUTER_CORS_ORIGINS")),
            metrics_port=number(e, "ROUTER_METRICS_PORT", int, None, minimum=1),
            drain_s=number(e, "ROUTER_DRAIN_SECONDS", float, cls.drain_s, minimum=0),
            body_timeout_s=number(e, "ROUTER_BODY_TIMEOUT_SECONDS", float, cls.body_timeout_s, minimum=0.001),
            header_timeout_s=number(e, "ROUTER_HEADER_TIMEOUT_SECONDS", float, cls.header_timeout_s, minimum=0.001),
            lean_lane=bool_env(e.get("ROUTER_LEAN_LANE"), True),
            disabled_plugins=list_env(e.get("ROUTER_DISABLED_PLUGINS")),
            log_level=e.get("ROUTER_LOG_LEVEL", cls.log_level).upper(),
            max_config_bytes=number(e, "ROUTER_MAX_CONFIG_BYTES", int, cls.max_config_bytes, minimum=1),
            max_config_items=number(e, "ROUTER_MAX_CONFIG_ITEMS", int, cls.max_config_items, minimum=1),
            caps=caps_from_env(e),
            environ=dict(e),
        )
