"""HTTP routes a plugin serves besides the codecs' paths (``register_routes``): the bulk-job API,
for one. Each carries its OpenAPI operation, so ``/openapi.json`` lists it beside the codecs'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError

Handler = Callable[[Any], Awaitable[Any]]  # an aiohttp handler: request -> response


@dataclass(frozen=True, slots=True)
class PluginRoute:
    method: str  # GET, POST, DELETE
    path: str  # an aiohttp path pattern ("/v1/files/{file_id}")
    handler: Handler = field(compare=False)
    operation: dict[str, Any] | None = field(default=None, compare=False)  # its OpenAPI operation object
    origin: str = ""  # the plugin's registered name


class RouteTable:
    """The routes plugins registered; two plugins serving one method and path is a startup error."""

    def __init__(self) -> None:
        self.routes: list[PluginRoute] = []

    def registrar(self, origin: str, builtin: bool) -> Callable[..., None]:
        def register(method: str, path: str, handler: Handler, operation: dict[str, Any] | None = None) -> None:
            route = PluginRoute(method.upper(), path, handler, operation, origin)
            held = next((r for r in self.routes if (r.method, r.path) == (route.method, route.path)), None)
            if held is not None:
                raise ConfigError(f"{route.method} {path} is registered by both {held.origin} and {origin}; "
                                  "block one with ROUTER_DISABLED_PLUGINS")
            self.routes.append(route)

        return register

    def openapi_paths(self) -> dict[str, dict[str, Any]]:
        """``{path: {method: operation}}`` of the routes that describe themselves (OpenAPI's ``{name}``
        is aiohttp's without a pattern)."""
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            if route.operation is not None:
                paths.setdefault(route.path, {})[route.method.lower()] = route.operation
        return paths
