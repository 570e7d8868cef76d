"""auth.yaml: who may call (how fast is rate_limits.yaml's, ``core.config.limits``).

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
from dataclasses import dataclass, field
from pathlib import Path

from core.config.yamlfile import LineDict, LineList, expect
from core.errors import ConfigError

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_SOURCES = ("key", "sha256", "key_env", "key_file")
_ENTRY_KEYS = {"name", "models", *_SOURCES}


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes = field(repr=False)
    models: frozenset[str] | None = None  # None: every model
    line: int = field(default=0, compare=False)  # where auth.yaml gives its model list (or the key)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: tuple[ApiKey, ...] = ()
    allow_anonymous_without_api_keys: bool = False
    key_files: tuple[str, ...] = ()  # files keys were read from: a change to one is a config change
    _by_digest: dict[bytes, ApiKey] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, ApiKey] = field(init=False, repr=False, compare=False)
    #: anonymous callers only while no key is configured and the flag says so (settled once per config)
    anonymous_allowed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_digest", {k.digest: k for k in self.keys})
        object.__setattr__(self, "_by_name", {k.name: k for k in self.keys})  # names are unique (parse_auth)
        object.__setattr__(self, "anonymous_allowed", not self.keys and self.allow_anonymous_without_api_keys)

    def find(self, presented: str) -> ApiKey | None:
        """The key matching ``presented``: one lookup by its SHA-256 digest, however many keys.
        What the lookup's timing could tell is about the digest, which says nothing of a key."""
        return self._by_digest.get(key_digest(presented))

    def named(self, name: str) -> ApiKey | None:
        """The key called ``name`` (a bulk job's owner), one lookup however many keys."""
        return self._by_name.get(name)


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
        return ApiKey(name=f"key-{digest.hex()[:8]}", digest=digest, line=line)
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
    return ApiKey(name=name, digest=digest, models=frozenset(models) if models is not None else None,
                  line=item.line_of("models"))


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
