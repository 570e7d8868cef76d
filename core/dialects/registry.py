"""The wire formats a gateway serves, by path, as plugins registered them.

Built-in codecs come from a built-in plugin (``plugins.codecs``) through the same
``register_codecs(register)`` hook a third party uses. Precedence is the chain's: a third-party
codec at a built-in's path replaces it, whichever registered first; two third-party codecs at
one path are a startup error naming both. ``default(kind)`` is the codec of a request built
without a body (OpenAI's for embeddings and the guide's for rerank).
"""

from __future__ import annotations

from collections.abc import Callable

from core.dialects.base import Codec
from core.errors import ConfigError, GatewayError
from core.kinds import EMBEDDINGS, RERANK, Kind
from core.precedence import Claims

DEFAULT_PATHS = {EMBEDDINGS: "/v1/embeddings", RERANK: "/v1/rerank"}


class CodecRegistry:
    def __init__(self) -> None:
        self.by_path: dict[str, Codec] = {}
        self._claims = Claims()  # path -> who registered its codec

    def registrar(self, origin: str, builtin: bool) -> Callable[[Codec], None]:
        """The ``register`` callback one plugin's ``register_codecs`` receives."""

        def register(codec: Codec) -> None:
            self.add(codec, origin=origin, builtin=builtin)

        return register

    def add(self, codec: Codec, *, origin: str = "?", builtin: bool = False) -> None:
        if not isinstance(codec, Codec):
            raise ConfigError(f"codec from {origin} must be an instance of core.dialects.Codec")
        path = codec.path
        if not path.startswith("/") or codec.kind not in DEFAULT_PATHS:
            raise ConfigError(f"codec {type(codec).__name__} from {origin}: a path starting with '/' and a kind of "
                              f"{', '.join(DEFAULT_PATHS)} are required")
        if self._claims.claim(path, origin, builtin, f"path {path}"):
            self.by_path[path] = codec

    @property
    def codecs(self) -> tuple[Codec, ...]:
        return tuple(self.by_path.values())

    def default(self, kind: Kind) -> Codec:
        return self.by_path[DEFAULT_PATHS[kind]]

    def error_body(self, path: str, error: GatewayError) -> object:
        """``error`` in the shape of the codec at ``path`` (OpenAI's on other paths)."""
        codec = self.by_path.get(path)
        return codec.render_error(error) if codec is not None else error.to_body()
