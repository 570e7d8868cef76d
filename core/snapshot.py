"""The serving snapshot: validated config files, every route's served model, the keys' tenants.

Immutable once built; ``core.gateway.Gateway.load`` builds one and swaps it in whole, so a
request sees one snapshot from start to end and a bad config never replaces a good one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ConfigFiles
    from core.scheduling.tenants import Tenants
    from core.served import ServedModel


@dataclass(frozen=True, slots=True)
class Snapshot:
    files: ConfigFiles
    models: Mapping[str, ServedModel]  # by alias
    tenants: Tenants
    flags: frozenset[str]
    loaded_at: float = field(default_factory=time.time)

    @property
    def digest(self) -> str:
        return self.files.digest

    def flag(self, name: str) -> bool:
        return name in self.flags

    def adapters_in_use(self) -> Iterator[Adapter]:
        return (m.adapter for m in self.models.values())
