"""Process settings from the environment (the ROUTER_* variables of the deployment guide)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    routing_path: str = "configs/routing.yaml"
    auth_path: str = "configs/auth.yaml"
    rate_limits_path: str = "configs/rate_limits.yaml"
    request_timeout_s: float = 30.0
    allow_disabled_models: bool = False
    reload_interval_s: float = 5.0
    safe_request_token_limit: int | None = None
    document_token_limit: int | None = None
    tokenizer_name: str | None = None
    feature_flags: tuple[str, ...] = ()
    qwen3_enabled: bool = False
    qwen3_api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 16 * 1024 * 1024
    max_inputs: int = 2048
    redis_url: str | None = field(default=None, repr=False)
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose X-Real-IP / X-Forwarded-For count
    disabled_plugins: tuple[str, ...] = ()
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env
        return cls(
            routing_path=e.get("ROUTER_ROUTING_PATH", cls.routing_path),
            auth_path=e.get("ROUTER_AUTH_PATH", cls.auth_path),
            rate_limits_path=e.get("ROUTER_RATE_LIMITS_PATH", cls.rate_limits_path),
            request_timeout_s=float(e.get("ROUTER_REQUEST_TIMEOUT_SECONDS") or cls.request_timeout_s),
            allow_disabled_models=_bool(e.get("ROUTER_ALLOW_DISABLED_MODELS"), False),
            reload_interval_s=float(e.get("ROUTER_ROUTING_RELOAD_INTERVAL_SECONDS") or cls.reload_interval_s),
            safe_request_token_limit=_int(e.get("ROUTER_SAFE_REQUEST_TOKEN_LIMIT")),
            document_token_limit=_int(e.get("ROUTER_DOCUMENT_TOKEN_LIMIT")),
            tokenizer_name=e.get("ROUTER_TOKENIZER_NAME") or None,
            feature_flags=_list(e.get("ROUTER_FEATURE_FLAGS")),
            qwen3_enabled=_bool(e.get("QWEN3_ENABLED"), False),
            qwen3_api_key=(e.get("QWEN3_API_KEY") or "").strip() or None,  # files from Secrets end in \n
            max_body_bytes=int(e.get("ROUTER_MAX_BODY_BYTES") or cls.max_body_bytes),
            max_inputs=int(e.get("ROUTER_MAX_INPUTS") or cls.max_inputs),
            redis_url=e.get("ROUTER_REDIS_URL") or None,
            trusted_proxies=_list(e.get("ROUTER_TRUSTED_PROXIES")),
            disabled_plugins=_list(e.get("ROUTER_DISABLED_PLUGINS")),
            log_level=e.get("ROUTER_LOG_LEVEL", cls.log_level).upper(),
        )
