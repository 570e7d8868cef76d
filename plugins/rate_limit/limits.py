"""The rate limiter's part of rate_limits.yaml: the ``default`` and ``anonymous`` buckets and a
key's own bucket in its ``per_api_key`` entry (``capacity``, ``refill_rate`` per second, and
``tokens_per_minute`` for a second bucket charged with the request's tokens). Declared to core as a
``LimitsSection``; an entry with no field of any owner is a bucket (so its missing fields are named).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config.limits import LimitsSection
from core.config.yamlfile import LineDict, expect

FIELDS = frozenset({"capacity", "refill_rate", "tokens_per_minute"})


@dataclass(frozen=True, slots=True)
class BucketSpec:
    capacity: float
    refill_rate: float  # per second
    tokens_per_minute: int | None = None


def read_bucket(spec: Any, parent: LineDict, key: str, label: str) -> BucketSpec:
    """One bucket. ``label`` names it in errors: a per_api_key entry's name may be a key itself."""
    if not isinstance(spec, LineDict):
        raise parent.fail(f"{label} must be a mapping with capacity and refill_rate", key)
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


def read_top_bucket(value: Any, doc: LineDict, key: str) -> BucketSpec:
    if isinstance(value, LineDict):
        unknown = sorted(set(value) - FIELDS)
        if unknown:
            raise value.fail(f"{key}: unknown field {unknown[0]!r}", unknown[0])
    return read_bucket(value, doc, key, key)


SECTION = LimitsSection("buckets", FIELDS, read_bucket, top_level=("default", "anonymous"),
                        read_top=read_top_bucket, claims_bare=True)
