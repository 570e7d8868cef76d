"""The built-in wire formats (``core.dialects.BUILTIN_CODECS``), registered like a third party's,
and the route option they read: ``return_documents``, a rerank route's default for requests that
do not say (vLLM's and Jina's servers always return the documents; the guide's and Cohere's do
not, and stay the default). A request's own ``return_documents`` always wins."""

from __future__ import annotations

from core import hookimpl
from core.dialects import BUILTIN_CODECS
from core.options import Option

ROUTE_OPTIONS = (
    Option("return_documents", bool, False, "rerank: put each document's text in the answer when the request "
           "does not say (for vLLM and Jina clients, whose servers always do); a request's return_documents wins",
           shapes_output=False, changes_space=False),
)


@hookimpl
def register_codecs(register) -> None:
    for codec in BUILTIN_CODECS:
        register(codec)


@hookimpl
def register_route_options(register) -> None:
    for option in ROUTE_OPTIONS:
        register(option)
