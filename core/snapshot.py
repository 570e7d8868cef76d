"""The serving snapshot: validated config files with every route bound to its adapter and token counter.

Immutable once built; ``core.gateway.Gateway.load`` builds one and swaps it in whole, so a
request sees one snapshot from start to end and a bad config never replaces a good one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.adapters import Adapter
    from core.config import ConfigFiles, ModelRoute
    from core.tokenization import TokenCounter


@dataclass(frozen=True, slots=True)
class Snapshot:
    files: ConfigFiles
    routes: Mapping[str, ModelRoute]
    adapters: Mapping[str, Adapter]
    counters: Mapping[str, TokenCounter]
    flags: frozenset[str]
    loaded_at: float = field(default_factory=time.time)

    @property
    def digest(self) -> str:
        return self.files.digest

    def flag(self, name: str) -> bool:
        return name in self.flags
