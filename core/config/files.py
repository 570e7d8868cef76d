"""Parse and validate all three config files into one immutable, hashable whole."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config.access import AuthConfig, parse_auth
from core.config.limits import LimitsSection, RateLimitConfig, parse_rate_limits
from core.config.routing import RoutingConfig, parse_routing
from core.config.settings import Settings
from core.config.yamlfile import DEFAULT_MAX_BYTES, load_yaml


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    routing: RoutingConfig
    auth: AuthConfig
    rate_limits: RateLimitConfig
    digest: str
    loaded_at: float


def config_digest(raws: Iterable[bytes]) -> str:
    """The digest of the three files' bytes (routing, auth, rate limits, in that order), then
    of the key files auth.yaml names: rotating a mounted key is a config change too."""
    return hashlib.sha256(b"\0".join(raws)).hexdigest()[:16]


UNREADABLE = b"\0unreadable\0"


def read_all(paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> list[bytes]:
    """Each file's bytes; an unreadable one reads as a marker (a state of its own), and one over
    ``max_bytes`` as its size and modification time (it is refused when loaded, never read whole)."""
    out = []
    for path in paths:
        try:
            stat = Path(path).stat()
            if stat.st_size > max_bytes:
                out.append(f"\0too big\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
                continue
            out.append(Path(path).read_bytes())
        except OSError:
            out.append(UNREADABLE)
    return out


def load_config(settings: Settings, known_types: Collection[str] | None = None,
                limits: Sequence[LimitsSection] = ()) -> ConfigFiles:
    """Read every file, validate every field; raise ConfigError (file, line) on the first problem.
    ``limits``: the owners of rate_limits.yaml's parts (a part nobody declares is refused)."""
    bounds = {"max_bytes": settings.max_config_bytes, "max_items": settings.max_config_items}
    routing_doc, r1 = load_yaml(settings.routing_path, **bounds)
    auth_doc, r2 = load_yaml(settings.auth_path, **bounds)
    limits_doc, r3 = load_yaml(settings.rate_limits_path, **bounds)
    auth = parse_auth(auth_doc)
    return ConfigFiles(
        routing=parse_routing(routing_doc, known_types),
        auth=auth,
        rate_limits=parse_rate_limits(limits_doc, limits),
        digest=config_digest((r1, r2, r3, *read_all(auth.key_files, settings.max_config_bytes))),
        loaded_at=time.time(),
    )
