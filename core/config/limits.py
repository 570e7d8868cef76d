"""rate_limits.yaml: a file whose parts belong to different owners.

Its top level holds ``per_api_key`` (an entry per key, by the key's name or, as in the
deployment guide, by the key itself) and whatever keys its owners declare (the rate limiter's
``default`` and ``anonymous`` buckets). Each owner declares a ``LimitsSection``: the entry fields
and top-level keys it owns and how it reads them (with file and line on a bad value) into its own
typed values. Core checks that every key and field has an owner, hands each part to its owner's
reader, and keeps the results by section: ``RateLimitConfig.top(name)`` and ``resolve(name, auth)``.
Core's own section is the scheduler's per-key policy (``core.scheduling.policy``); the rate
limiter's buckets are its plugin's (``plugins.rate_limit``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from core.config.yamlfile import LineDict, expect
from core.errors import ConfigError

if TYPE_CHECKING:
    from core.config.access import AuthConfig

LABEL = "per_api_key entry"


@dataclass(frozen=True, slots=True)
class LimitsSection:
    """One owner's part of rate_limits.yaml.

    ``fields``: the per_api_key entry fields it owns; ``read_entry(entry, label)`` reads them into
    its typed value. ``top_level``: the top-level keys it owns; ``read_top(value, doc, key)`` reads
    one. ``claims_bare``: an entry holding no owner's field is this owner's (so its reader says
    what is missing)."""

    name: str
    fields: frozenset[str]
    read_entry: Callable[[Any, LineDict, str, str], Any]  # (entry, per_api_key, entry name, label)
    top_level: tuple[str, ...] = ()
    read_top: Callable[[Any, LineDict, str], Any] | None = None
    claims_bare: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))  # section → name
    tops: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))  # section → key
    # where each per_api_key entry is, to point at one that matches no key
    entry_lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    file: str = ""

    def top(self, section: str) -> Mapping[str, Any]:
        """The top-level values of a section, by key (absent keys are missing)."""
        return self.tops.get(section, MappingProxyType({}))

    def resolve(self, section: str, auth: AuthConfig) -> tuple[dict[str, Any], list[int]]:
        """Per key name, the section's value of its ``per_api_key`` entry, and the lines of the
        entries matching no key. An entry is keyed by the key's name or by the key itself."""
        by_name = {k.name: k for k in auth.keys}
        found: dict[str, Any] = {}
        for entry, value in self.entries.get(section, {}).items():
            key = by_name.get(entry) or auth.find(entry)
            if key is not None:
                found[key.name] = value
        return found, self.unmatched(auth)

    def unmatched(self, auth: AuthConfig) -> list[int]:
        by_name = {k.name for k in auth.keys}
        return [line for entry, line in self.entry_lines.items() if entry not in by_name and auth.find(entry) is None]


def owners(sections: Sequence[LimitsSection]) -> dict[str, LimitsSection]:
    """Each top-level key's owner; ConfigError when two sections claim one key or one field (the
    gateway checks this at start: a silent merge would hand one field to two readers)."""
    tops_known: dict[str, LimitsSection] = {}
    fields_known: dict[str, LimitsSection] = {}
    for section in sections:
        for table, names, what in ((tops_known, section.top_level, "top-level key"),
                                   (fields_known, section.fields, "per_api_key field")):
            for name in names:
                held = table.setdefault(name, section)
                if held is not section:
                    raise ConfigError(f"rate_limits.yaml {what} {name!r} is declared by both {held.name!r} "
                                      f"and {section.name!r}")
    return tops_known


def parse_rate_limits(doc: LineDict, sections: Sequence[LimitsSection] = ()) -> RateLimitConfig:
    tops_known = owners(sections)
    allowed = [*tops_known, "per_api_key"]
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise doc.fail(f"unknown top-level key {unknown[0]!r} (expected {', '.join(allowed)})", unknown[0])
    tops: dict[str, dict[str, Any]] = {}
    for key, owner in tops_known.items():
        if doc.get(key) is not None and owner.read_top is not None:
            tops.setdefault(owner.name, {})[key] = owner.read_top(doc[key], doc, key)
    per_key_doc = expect(doc, "per_api_key", dict, required=False, default=None)
    entries: dict[str, dict[str, Any]] = {s.name: {} for s in sections}
    lines: dict[str, int] = {}
    bare = next((s for s in sections if s.claims_bare), None)
    owned = frozenset().union(*(s.fields for s in sections))
    for name in per_key_doc or {}:
        entry, key = per_key_doc[name], str(name)
        lines[key] = per_key_doc.line_of(key)
        present = set(entry) if isinstance(entry, LineDict) else set()
        stray = sorted(present - owned)
        if stray:
            raise entry.fail(f"{LABEL}: unknown field {stray[0]!r}", stray[0])
        readers = [s for s in sections if present & s.fields] or ([bare] if bare is not None else [])
        if not readers:
            raise ConfigError(f"{LABEL} sets nothing", file=doc.file, line=lines[key])
        for section in readers:  # each reads its own fields (and says what its part lacks)
            entries[section.name][key] = section.read_entry(entry, per_key_doc, key, LABEL)
    return RateLimitConfig(entries=MappingProxyType({k: MappingProxyType(v) for k, v in entries.items()}),
                           tops=MappingProxyType({k: MappingProxyType(v) for k, v in tops.items()}),
                           entry_lines=MappingProxyType(lines), file=doc.file)
