"""The built-in wire formats (``core.dialects.BUILTIN_CODECS``), registered like a third party's."""

from __future__ import annotations

from core import hookimpl
from core.dialects import BUILTIN_CODECS


@hookimpl
def register_codecs(register) -> None:
    for codec in BUILTIN_CODECS:
        register(codec)
