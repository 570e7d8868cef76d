"""Declared config fields: one ``Option`` per field, validated, defaulted and documented in one place.

Adapters declare the options of their upstream (``Adapter.upstream_options``) and of a route's
``options:`` block (``Adapter.route_options``); plugins declare route options through the
``register_route_options`` hook. ``OptionSchema.check`` refuses an unknown key (naming the ones
it knows), a wrong type or a value out of range, and returns the options with every default
filled in, so code reading them never needs its own fallback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import shown


@dataclass(frozen=True, slots=True)
class Option:
    """One field: ``type`` is ``int``, ``float`` (ints accepted), ``str``, ``bool`` or ``list``.
    ``choices`` bounds a ``str``; on a ``bool`` it names the words accepted besides true and
    false (the cache's ``shared``).

    Two flags say what a value does to vectors, and they differ:

    * ``shapes_output``: a different value may change what the model returns for the same input
      (a prompt, a model path, a revision, truncation), so the embedding cache keys on it; False
      for options that only change how a call is made (retries, timeouts, queue bounds).
    * ``changes_space``: vectors made with a different value live in another embedding space
      (``core.space``: the ``X-Embedding-Space`` fingerprint); unset, it is ``shapes_output``.
      A transport choice (an upstream's wire encoding, a device) shapes the key, not the space.
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    shapes_output: bool = True
    changes_space: bool | None = None  # None: as shapes_output

    def __post_init__(self) -> None:
        if self.changes_space is None:
            object.__setattr__(self, "changes_space", self.shapes_output)

    def check(self, value: Any) -> Any:
        """The value, converted where lossless (an int for a float field); ValueError otherwise."""
        if value is None:
            return self.default
        kind = self.type
        if kind is bool:
            if not isinstance(value, bool) and value not in self.choices:
                words = " or ".join(", ".join(("true", "false", *self.choices)).rsplit(", ", 1))
                raise ValueError(f"'{self.name}' must be {words}, got {shown(value)}")
            return value
        if kind in (int, float):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or (kind is int and not isinstance(value, int)) or not math.isfinite(value)):
                raise ValueError(f"'{self.name}' must be {'an integer' if kind is int else 'a number'}, "
                                 f"got {shown(value)}")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"'{self.name}' must be >= {self.minimum:g}, got {shown(value)}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"'{self.name}' must be <= {self.maximum:g}, got {shown(value)}")
            return kind(value)
        if not isinstance(value, kind):
            raise ValueError(f"'{self.name}' must be a {kind.__name__}, got {type(value).__name__}")
        if self.choices and value not in self.choices:
            raise ValueError(f"'{self.name}' must be one of {', '.join(self.choices)}, got {shown(value)}")
        return value


class OptionSchema:
    """An ordered set of options; ``check`` validates a mapping against it."""

    def __init__(self, options: Iterable[Option] = ()) -> None:
        self.options: dict[str, Option] = {}
        for option in options:
            if option.name in self.options:
                raise ValueError(f"option {option.name!r} is declared twice")
            self.options[option.name] = option

    def __iter__(self):
        return iter(self.options.values())

    def __contains__(self, name: object) -> bool:
        return name in self.options

    def __or__(self, other: OptionSchema) -> OptionSchema:
        return OptionSchema([*self, *other])

    def check(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``values`` with defaults filled in; ValueError naming the field on any problem."""
        unknown = sorted(set(values) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UnknownOption(f"unknown option {unknown[0]!r} for {where} (known: {known})", unknown[0])
        out: dict[str, Any] = {}
        for name, option in self.options.items():
            try:
                out[name] = option.check(values.get(name))
            except ValueError as exc:
                raise OptionError(str(exc), name) from None
        return out


class OptionError(ValueError):
    """A bad option value; ``field`` is the key, so the error can point at its line."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownOption(OptionError):
    pass
