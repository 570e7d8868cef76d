"""The periods a quota counts over, in UTC: the day (from midnight) and the calendar month (from
the first, at midnight). Each has an id that names its counter in the store, a start and the
instant it resets; a counter outlives its period by ``KEEP_S`` so yesterday's figures can still
be read from the store, then expires."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

PeriodName = Literal["day", "month"]
NAMES: tuple[PeriodName, ...] = ("day", "month")
KEEP_S = 7 * 86400  # how long a counter stays in the store after its period ended


@dataclass(frozen=True, slots=True)
class Period:
    name: PeriodName
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive: the instant the counter resets
    id: str = field(init=False, compare=False)  # ``d2026-12-04`` or ``m2026-12``: names the counter in the store

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.start.strftime("d%Y-%m-%d" if self.name == "day" else "m%Y-%m"))

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.end - now).total_seconds())

    @property
    def expires_at(self) -> int:
        """Unix time at which the store may forget the counter."""
        return int(self.end.timestamp()) + KEEP_S


def utc(now: float | datetime | None = None) -> datetime:
    """``now`` (Unix seconds, an aware datetime, or the clock) as an aware UTC datetime."""
    if now is None:
        return datetime.now(UTC)
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("a naive datetime has no time zone; give UTC")
        return now.astimezone(UTC)
    return datetime.fromtimestamp(now, UTC)


def day(now: datetime) -> Period:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Period("day", start, start + timedelta(days=1))


def month(now: datetime) -> Period:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return Period("month", start, end)


def current(now: float | datetime | None = None) -> tuple[Period, Period]:
    """The day and the month ``now`` falls in."""
    at = utc(now)
    return day(at), month(at)


class Calendar:
    """``current`` for a clock that only moves forward in small steps: worked out once a day."""

    def __init__(self) -> None:
        self._day = -1
        self._periods: tuple[Period, Period] | None = None

    def at(self, now: float) -> tuple[Period, Period]:
        number = int(now // 86400)  # Unix time has no leap seconds: every UTC day is 86400 s
        if number != self._day or self._periods is None:
            self._periods, self._day = current(now), number
        return self._periods


def iso(at: datetime) -> str:
    """``2026-12-04T00:00:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
