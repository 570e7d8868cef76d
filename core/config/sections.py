"""Settings a plugin owns: its environment variables, declared once, read into its own frozen
dataclass.

A plugin declares a ``SettingsSection`` (the dataclass and one ``EnvOption`` per variable) through
the ``register_settings`` hook; the gateway reads every section from the process environment at
start, with the same checks and errors as core's own variables (a ConfigError naming the
variable, never echoing a secret), and a component reads its typed view with
``settings.of(TheDataclass)``. Core's ``Settings`` keeps core's variables only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, Literal, TypeVar

from core.config.settings import bool_env, list_env, number, redis_url_env

T = TypeVar("T")
EnvKind = Literal["str", "int", "float", "bool", "list", "redis_url"]


@dataclass(frozen=True, slots=True)
class EnvOption:
    """One variable: its name, the dataclass field it fills, how it is read, its default and meaning.
    ``secret``: never shown (an API key, a URL that may hold a password)."""

    env: str
    field: str
    kind: EnvKind = "str"
    default: Any = None
    help: str = ""
    minimum: float = 0
    secret: bool = False

    def read(self, env: Mapping[str, str]) -> Any:
        kind = self.kind
        if kind in ("int", "float"):
            return number(env, self.env, int if kind == "int" else float, self.default, minimum=self.minimum)
        if kind == "bool":
            return bool_env(env.get(self.env), self.default)
        if kind == "list":
            return list_env(env.get(self.env)) or tuple(self.default or ())
        if kind == "redis_url":
            return redis_url_env(env, self.env)
        value = (env.get(self.env) or "").strip()  # files from Secrets end in a newline
        return value or self.default


@dataclass(frozen=True, slots=True)
class SettingsSection(Generic[T]):
    """A plugin's settings: ``cls`` (a frozen dataclass) filled from ``options``."""

    cls: type[T]
    options: tuple[EnvOption, ...]
    title: str = ""

    def __post_init__(self) -> None:
        shown = {f.name for f in fields(self.cls) if f.repr}  # type: ignore[arg-type]
        leaky = [o.env for o in self.options if o.secret and o.field in shown]
        if leaky:  # a secret in a repr reaches logs and tracebacks
            raise TypeError(f"{self.cls.__name__}: the field of secret {', '.join(leaky)} needs field(repr=False)")

    def read(self, env: Mapping[str, str]) -> T:
        return self.cls(**{o.field: o.read(env) for o in self.options})
