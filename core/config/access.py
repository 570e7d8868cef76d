"""auth.yaml and rate_limits.yaml: who may call, and how fast.

An API key is kept only as its SHA-256 digest, so neither a parsed config, a repr, a log line
nor an error message can carry it. auth.yaml entries take any of these forms::

    api_keys:
      - "production-key-1"                  # plaintext, as in the deployment guide
      - "sha256:9f86d081884c7d65..."        # digest only: the key itself is not in the file
      - name: search-team                   # a mapping adds a name and a model allow-list
        key_env: SEARCH_TEAM_KEY            # or key: / sha256: / key_file: (a Kubernetes Secret)
        models: [bge-m3, rerank-base]
    allow_anonymous_without_api_keys: false

A key's name labels logs and metrics; without one it is ``key-`` plus the first 8 hex digits of
the key's SHA-256, the same for the plaintext and the ``sha256:`` form of one key.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.config.yamlfile import LineDict, LineList, expect
from core.errors import ConfigError

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_SOURCES = ("key", "sha256", "key_env", "key_file")
_ENTRY_KEYS = {"name", "models", *_SOURCES}
_BUCKET_KEYS = {"capacity", "refill_rate", "tokens_per_minute"}
_POLICY_KEYS = {"weight", "priority", "max_queued", "priority_header"}
_PRIORITY_NAMES = ("interactive", "bulk")


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes = field(repr=False)
    models: frozenset[str] | None = None  # None: every model


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: tuple[ApiKey, ...] = ()
    allow_anonymous_without_api_keys: bool = False
    key_files: tuple[str, ...] = ()  # files keys were read from: a change to one is a config change
    _by_digest: dict[bytes, ApiKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_digest", {k.digest: k for k in self.keys})

    @property
    def anonymous_allowed(self) -> bool:
        """Anonymous callers only while no key is configured and the flag says so."""
        return not self.keys and self.allow_anonymous_without_api_keys

    def find(self, presented: str) -> ApiKey | None:
        """The key matching ``presented``: one lookup by its SHA-256 digest, however many keys.
        What the lookup's timing could tell is about the digest, which says nothing of a key."""
        return self._by_digest.get(key_digest(presented))


@dataclass(frozen=True, slots=True)
class BucketSpec:
    capacity: float
    refill_rate: float  # per second
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How the scheduler treats a key (``core.scheduling``): its share against other keys, its
    priority, how many inputs it may have queued for one model, and whether its requests may
    choose their priority with ``X-Priority``."""

    weight: float = 1.0
    priority: str = "interactive"
    max_queued: int | None = None
    priority_header: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    default: BucketSpec | None = None
    anonymous: BucketSpec | None = None
    per_api_key: Mapping[str, BucketSpec] = field(default_factory=lambda: MappingProxyType({}))
    policies: Mapping[str, QueuePolicy] = field(default_factory=lambda: MappingProxyType({}))
    # where each per_api_key entry is, to point at one that matches no key
    entry_lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    file: str = ""

    def resolve(self, auth: AuthConfig) -> tuple[dict[str, BucketSpec], list[int]]:
        """Per key name, the bucket of its ``per_api_key`` entry, and the lines matching no key.

        An entry is keyed by the key's name or, as in the deployment guide, by the key itself.
        """
        return self._by_key_name(self.per_api_key, auth)

    def resolve_policies(self, auth: AuthConfig) -> dict[str, QueuePolicy]:
        """Per key name, the scheduling policy of its ``per_api_key`` entry."""
        return self._by_key_name(self.policies, auth)[0]

    def _by_key_name(self, entries: Mapping[str, Any], auth: AuthConfig) -> tuple[dict[str, Any], list[int]]:
        by_name = {k.name: k for k in auth.keys}
        found: dict[str, Any] = {}
        unmatched: list[int] = []
        for entry, value in entries.items():
            key = by_name.get(entry) or auth.find(entry)
            if key is None:
                unmatched.append(self.entry_lines.get(entry, 0))
            else:
                found[key.name] = value
        return found, unmatched


def _secret_from(entry: LineDict, index: int) -> bytes:
    present = [s for s in _SOURCES if s in entry]
    if len(present) != 1:
        raise entry.fail(f"api_keys[{index}] needs exactly one of {', '.join(_SOURCES)}")
    source = present[0]
    value = expect(entry, source, str)
    if source == "sha256":
        return _parse_hex(entry, value, source, index)
    if source == "key_env":
        secret = os.environ.get(value, "")
        if not secret.strip():
            raise entry.fail(f"api_keys[{index}]: environment variable {value} is not set or empty", source)
    elif source == "key_file":
        try:
            secret = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise entry.fail(f"api_keys[{index}]: cannot read key file {value}: {exc.strerror or exc}",
                             source) from None
        except UnicodeDecodeError:  # the contents are not echoed: they may be a key
            raise entry.fail(f"api_keys[{index}]: key file {value} is not UTF-8 text", source) from None
        if not secret.strip():
            raise entry.fail(f"api_keys[{index}]: key file {value} is empty", source)
    else:
        secret = value
    secret = secret.strip()  # Secrets mounted as files usually end with a newline
    if secret.startswith("sha256:"):
        return _parse_hex(entry, secret[len("sha256:"):], source, index)
    if not secret:
        raise entry.fail(f"api_keys[{index}]: the key must not be empty", source)
    return key_digest(secret)


def _parse_hex(doc: LineDict, value: str, field_name: str, index: int, line: int | None = None) -> bytes:
    if not _HEX64.match(value):
        message = f"api_keys[{index}]: a sha256 digest must be 64 hex digits"
        raise ConfigError(message, file=doc.file, line=line) if line else doc.fail(message, field_name)
    return bytes.fromhex(value)


def _parse_key(doc: LineDict, raw: list, index: int) -> ApiKey:
    item = raw[index]
    line = raw.line_of(index, doc.line_of("api_keys")) if isinstance(raw, LineList) else doc.line_of("api_keys")
    if isinstance(item, str):
        if not item.strip():
            raise ConfigError(f"api_keys[{index}] must not be empty", file=doc.file, line=line)
        if item.startswith("sha256:"):
            digest = _parse_hex(doc, item[len("sha256:"):], "api_keys", index, line)
        else:
            digest = key_digest(item.strip())
        return ApiKey(name=f"key-{digest.hex()[:8]}", digest=digest)
    if not isinstance(item, LineDict):
        raise ConfigError(f"api_keys[{index}] must be a string or a mapping", file=doc.file, line=line)
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise item.fail(f"api_keys[{index}]: unknown field {unknown[0]!r}", unknown[0])
    digest = _secret_from(item, index)
    name = expect(item, "name", str, required=False, default=f"key-{digest.hex()[:8]}")
    if not _NAME.match(name) or name == "anonymous":
        raise item.fail(f"api_keys[{index}]: name must be 1-64 of A-Z a-z 0-9 . _ : - "
                        "and not 'anonymous'", "name")
    models = expect(item, "models", list, required=False)
    if models is not None and not all(isinstance(m, str) and m for m in models):
        raise item.fail(f"api_keys[{index}]: 'models' must be a list of model aliases", "models")
    return ApiKey(name=name, digest=digest, models=frozenset(models) if models is not None else None)


def parse_auth(doc: LineDict) -> AuthConfig:
    unknown = sorted(set(doc) - {"api_keys", "allow_anonymous_without_api_keys"})
    if unknown:
        raise doc.fail(f"unknown top-level key {unknown[0]!r}", unknown[0])
    raw = expect(doc, "api_keys", list, required=False, default=[])
    keys: list[ApiKey] = []
    for i in range(len(raw)):
        key = _parse_key(doc, raw, i)
        line = raw.line_of(i) if isinstance(raw, LineList) else doc.line_of("api_keys")
        for j, other in enumerate(keys):
            if other.digest == key.digest:  # not secret-dependent timing: this runs at load
                raise ConfigError(f"api_keys[{i}] is the same key as api_keys[{j}]", file=doc.file, line=line)
            if other.name == key.name:
                raise ConfigError(f"api_keys[{i}] has the same name as api_keys[{j}]: {key.name}",
                                  file=doc.file, line=line)
        keys.append(key)
    anon = expect(doc, "allow_anonymous_without_api_keys", bool, required=False, default=False)
    key_files = tuple(str(e["key_file"]) for e in raw if isinstance(e, dict) and "key_file" in e)
    return AuthConfig(keys=tuple(keys), allow_anonymous_without_api_keys=anon, key_files=key_files)


def _bucket(spec: object, parent: LineDict, key: str, label: str, extra: frozenset[str] = frozenset()) -> BucketSpec:
    """Parse one bucket. ``label`` names it in errors: a per_api_key entry may be a key itself."""
    if not isinstance(spec, LineDict):
        raise parent.fail(f"{label} must be a mapping with capacity and refill_rate", key)
    unknown = sorted(set(spec) - _BUCKET_KEYS - extra)
    if unknown:
        raise spec.fail(f"{label}: unknown field {unknown[0]!r}", unknown[0])
    capacity = expect(spec, "capacity", (int, float))
    refill = expect(spec, "refill_rate", (int, float))
    if capacity <= 0:
        raise spec.fail(f"{label}: 'capacity' must be positive", "capacity")
    if refill < 0:
        raise spec.fail(f"{label}: 'refill_rate' must not be negative", "refill_rate")
    tpm = expect(spec, "tokens_per_minute", int, required=False)
    if tpm is not None and (not isinstance(tpm, int) or tpm < 1):
        raise spec.fail(f"{label}: 'tokens_per_minute' must be a positive integer", "tokens_per_minute")
    return BucketSpec(capacity=float(capacity), refill_rate=float(refill), tokens_per_minute=tpm)


def _policy(spec: LineDict, label: str) -> QueuePolicy:
    weight = expect(spec, "weight", (int, float), required=False, default=1.0)
    if isinstance(weight, bool) or weight <= 0:
        raise spec.fail(f"{label}: 'weight' must be a positive number", "weight")
    priority = expect(spec, "priority", str, required=False, default="interactive")
    if priority not in _PRIORITY_NAMES:
        raise spec.fail(f"{label}: 'priority' must be one of {', '.join(_PRIORITY_NAMES)}", "priority")
    max_queued = expect(spec, "max_queued", int, required=False)
    if max_queued is not None and (isinstance(max_queued, bool) or max_queued < 1):
        raise spec.fail(f"{label}: 'max_queued' must be a positive integer (inputs)", "max_queued")
    header = expect(spec, "priority_header", bool, required=False, default=False)
    return QueuePolicy(weight=float(weight), priority=priority, max_queued=max_queued, priority_header=header)


def parse_rate_limits(doc: LineDict) -> RateLimitConfig:
    unknown = sorted(set(doc) - {"default", "anonymous", "per_api_key"})
    if unknown:
        raise doc.fail(f"unknown top-level key {unknown[0]!r} (expected default, anonymous, per_api_key)",
                       unknown[0])
    top = {k: _bucket(doc[k], doc, k, k) for k in ("default", "anonymous") if doc.get(k) is not None}
    per_key_doc = expect(doc, "per_api_key", dict, required=False, default=None)
    per_key: dict[str, BucketSpec] = {}
    policies: dict[str, QueuePolicy] = {}
    lines: dict[str, int] = {}
    label = "per_api_key entry"
    for name in per_key_doc or {}:
        entry = per_key_doc[name]
        lines[str(name)] = per_key_doc.line_of(str(name))
        # An entry may set a bucket, a scheduling policy, or both; without a bucket 'default' applies.
        if not isinstance(entry, LineDict) or set(entry) & _BUCKET_KEYS or not set(entry) & _POLICY_KEYS:
            per_key[str(name)] = _bucket(entry, per_key_doc, str(name), label, frozenset(_POLICY_KEYS))
        else:
            unknown = sorted(set(entry) - _POLICY_KEYS)
            if unknown:
                raise entry.fail(f"{label}: unknown field {unknown[0]!r}", unknown[0])
        if set(entry) & _POLICY_KEYS:
            policies[str(name)] = _policy(entry, label)
    return RateLimitConfig(default=top.get("default"), anonymous=top.get("anonymous"),
                           per_api_key=MappingProxyType(per_key), policies=MappingProxyType(policies),
                           entry_lines=MappingProxyType(lines), file=doc.file)
