"""Precedence by origin, for everything plugins claim by name (a stage slot, an adapter type, a
codec's path, the embed layer): a built-in takes a free name; a third party's claim replaces the
built-in, whichever registered first; two claims of one standing are a startup error naming both."""

from __future__ import annotations

from core.errors import ConfigError


class Claims:
    def __init__(self) -> None:
        self._held: dict[str, tuple[str, bool]] = {}  # name -> (plugin, built in)

    def claim(self, name: str, origin: str, builtin: bool, label: str) -> bool:
        """True: ``origin`` now holds ``name``; False: a third party already holds it (a built-in's
        claim gives way). ``label`` names the thing in the error (``adapter type 'x'``)."""
        held = self._held.get(name)
        if held is not None:
            if held[1] == builtin:  # two plugins of one standing: no rule can pick
                raise ConfigError(f"{label} is registered by both {held[0]} and {origin}; "
                                  "block one with ROUTER_DISABLED_PLUGINS")
            if builtin:
                return False
        self._held[name] = (origin, builtin)
        return True

    def origin(self, name: str) -> str:
        return self._held[name][0]
