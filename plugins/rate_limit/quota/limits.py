"""The quota's part of rate_limits.yaml: ``quota:`` in a key's ``per_api_key`` entry.

    per_api_key:
      team-search:
        quota: {tokens_per_day: 2000000, tokens_per_month: 40000000, requests_per_month: 500000}

Every limit is optional but one must be set; each is a positive whole number. ``fail_open: true``
lets the key's requests through unchecked while the store (Redis) cannot be reached; without it
the ``rate_limit_fail_open`` flag decides, as for the token buckets. Declared to core as a
``LimitsSection`` (``core.config.limits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config.limits import LimitsSection
from core.config.yamlfile import LineDict, expect

LIMITS = ("tokens_per_day", "tokens_per_month", "requests_per_day", "requests_per_month")
QUOTA_FIELDS = frozenset({*LIMITS, "fail_open"})


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    requests_per_day: int | None = None
    requests_per_month: int | None = None
    fail_open: bool | None = None  # None: the rate_limit_fail_open flag decides

    def limit(self, what: str, period: str) -> int | None:
        """The limit of ``what`` (tokens, requests) over ``period`` (day, month), None if unset."""
        value: int | None = getattr(self, f"{what}_per_{period}")
        return value

    @property
    def counts_tokens(self) -> bool:
        return self.tokens_per_day is not None or self.tokens_per_month is not None


def read_quota(entry: Any, parent: LineDict, name: str, label: str) -> QuotaSpec:
    """A ``per_api_key`` entry's ``quota`` (its other fields are other owners')."""
    spec = entry.get("quota")
    if not isinstance(spec, LineDict):
        raise entry.fail(f"{label}: 'quota' must be a mapping of {', '.join(LIMITS)} (and fail_open)", "quota")
    unknown = sorted(set(spec) - QUOTA_FIELDS)
    if unknown:
        raise spec.fail(f"{label}: quota: unknown field {unknown[0]!r} (expected {', '.join(sorted(QUOTA_FIELDS))})",
                        unknown[0])
    values: dict[str, int] = {}
    for field in LIMITS:
        value = expect(spec, field, int, required=False)
        if value is not None:
            if value < 1:
                raise spec.fail(f"{label}: quota: {field!r} must be a positive whole number", field)
            values[field] = value
    if not values:
        raise spec.fail(f"{label}: quota sets no limit (expected one of {', '.join(LIMITS)})")
    fail_open = expect(spec, "fail_open", bool, required=False)
    return QuotaSpec(**values, fail_open=fail_open)


SECTION = LimitsSection("quota", frozenset({"quota"}), read_quota)
