"""The scheduler's part of rate_limits.yaml: a key's ``per_api_key`` entry may give it a weight,
a priority, a bound on its queued inputs and the right to choose its priority per request
(``X-Priority``). Core's own ``LimitsSection`` (``core.config.limits``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config.limits import LimitsSection
from core.config.yamlfile import LineDict, expect
from core.scheduling.work import PRIORITIES

FIELDS = frozenset({"weight", "priority", "max_queued", "priority_header"})


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How the scheduler treats a key: its share against other keys, its priority, how many
    inputs it may have queued for one model, and whether its requests may choose their priority."""

    weight: float = 1.0
    priority: str = "interactive"
    max_queued: int | None = None
    priority_header: bool = False


def read_policy(spec: Any, parent: LineDict, name: str, label: str) -> QueuePolicy:
    weight = expect(spec, "weight", (int, float), required=False, default=1.0)
    if isinstance(weight, bool) or weight <= 0:
        raise spec.fail(f"{label}: 'weight' must be a positive number", "weight")
    priority = expect(spec, "priority", str, required=False, default="interactive")
    if priority not in PRIORITIES:
        raise spec.fail(f"{label}: 'priority' must be one of {', '.join(PRIORITIES)}", "priority")
    max_queued = expect(spec, "max_queued", int, required=False)
    if max_queued is not None and (isinstance(max_queued, bool) or max_queued < 1):
        raise spec.fail(f"{label}: 'max_queued' must be a positive integer (inputs)", "max_queued")
    header = expect(spec, "priority_header", bool, required=False, default=False)
    return QueuePolicy(weight=float(weight), priority=priority, max_queued=max_queued, priority_header=header)


SECTION = LimitsSection("scheduling", FIELDS, read_policy)
