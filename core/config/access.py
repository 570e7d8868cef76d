"""auth.yaml and rate_limits.yaml: who may call, and how fast."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.config.yamlfile import LineDict, expect


@dataclass(frozen=True, slots=True)
class ApiKey:
    secret: str
    name: str


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: tuple[ApiKey, ...] = ()
    allow_anonymous_without_api_keys: bool = False


@dataclass(frozen=True, slots=True)
class BucketSpec:
    capacity: float
    refill_rate: float


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    default: BucketSpec | None = None
    anonymous: BucketSpec | None = None
    per_api_key: Mapping[str, BucketSpec] = field(default_factory=lambda: MappingProxyType({}))


def parse_auth(doc: LineDict) -> AuthConfig:
    raw = expect(doc, "api_keys", list, required=False, default=[])
    keys = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise doc.fail(f"api_keys[{i}] must be a non-empty string", "api_keys")
        keys.append(ApiKey(secret=item, name=f"key-{i + 1}"))
    anon = expect(doc, "allow_anonymous_without_api_keys", bool, required=False, default=False)
    return AuthConfig(keys=tuple(keys), allow_anonymous_without_api_keys=anon)


def _bucket(doc: LineDict, key: str) -> BucketSpec | None:
    spec = expect(doc, key, dict, required=False)
    if spec is None:
        return None
    capacity = expect(spec, "capacity", (int, float))
    refill = expect(spec, "refill_rate", (int, float))
    if capacity <= 0:
        raise spec.fail("'capacity' must be positive", "capacity")
    if refill < 0:
        raise spec.fail("'refill_rate' must not be negative", "refill_rate")
    return BucketSpec(capacity=float(capacity), refill_rate=float(refill))


def parse_rate_limits(doc: LineDict) -> RateLimitConfig:
    per_key_doc = expect(doc, "per_api_key", dict, required=False, default=None)
    per_key = {}
    if per_key_doc:
        for name in per_key_doc:
            per_key[str(name)] = _bucket(per_key_doc, name)
    return RateLimitConfig(default=_bucket(doc, "default"), anonymous=_bucket(doc, "anonymous"),
                           per_api_key=MappingProxyType(per_key))
