"""The one object that travels through the request chain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.dialects import Codec
    from core.kinds import Kind
    from core.requests import ModelRequest, Outcome
    from core.served import ServedModel
    from core.snapshot import Snapshot


@dataclass(slots=True)
class Caller:
    """Who is calling. ``name`` is safe to log; the key itself never is."""

    name: str
    anonymous: bool
    client_ip: str
    allowed_models: frozenset[str] | None = None


@dataclass(slots=True)
class Flow:
    """One request: what was asked, by whom, which model serves it, and what came back.

    Stages read what earlier stages wrote. The ``adapter`` stage leaves the typed ``outcome``;
    a stage ends the chain early by setting ``response`` (a body) or by raising a ``GatewayError``.
    """

    kind: Kind | Literal["models"]  # what the endpoint serves (models: the listing, no model call)
    snapshot: Snapshot
    request_id: str
    client_ip: str
    headers: Any  # the HTTP request headers (case-insensitive mapping)
    # The body is read and parsed by the ``parse`` stage, after auth and rate limiting, so an
    # unauthenticated or limited caller costs no body read. Later stages use ``request``.
    codec: Codec | None = None  # the wire format (core.dialects); the parse stage may pick another
    read_body: bytes | Callable[[], Awaitable[bytes]] | None = None  # the body as read, or how to read it
    request: ModelRequest | None = None
    wire: Any = None  # what the codec's parser kept for its render (Parsed.state); no stage reads it
    caller: Caller | None = None
    model: ServedModel | None = None  # set by the route stage
    token_counts: list[int] | None = None
    prompt_tokens: int | None = None  # the sum of token_counts, set with them by the token_limit stage
    needs_token_counts: bool = False  # set by a stage that charges tokens (a tokens-per-minute budget)
    outcome: Outcome | None = None  # what the model gave; the HTTP edge has the codec render it
    big_answer: bool = False  # the outcome is big enough to render and serialise off the event loop
    response: Any = None  # a body a stage answers with instead (it ends the chain; rendered as it is)
    response_headers: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None
    status: int = 200
    stages_run: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def parsed(self) -> ModelRequest:
        """The parsed request; for stages after ``parse``."""
        if self.request is None:
            raise RuntimeError("no parsed request: this stage must run after 'parse'")
        return self.request

    def served(self) -> ServedModel:
        """The model that serves this request; for stages after ``route``."""
        if self.model is None:
            raise RuntimeError("no model: this stage must run after 'route'")
        return self.model

    def deadline(self, timeout_s: float) -> float:
        """The event loop's time at which ``timeout_s`` counted from the request's arrival runs
        out: the gateway's own work on it (parsing, tokenizing) comes out of its timeout too."""
        return asyncio.get_running_loop().time() + timeout_s - (time.perf_counter() - self.started)

    @property
    def route(self) -> ModelRoute | None:
        """The chosen model's route (None before ``route`` ran or when it refused)."""
        return self.model.route if self.model is not None else None

    @property
    def usage_tokens(self) -> int | None:
        """The tokens the answer reports (its outcome's: counted here, else as the upstream said),
        so that metered usage is what the caller was told; before an outcome, as counted."""
        return self.outcome.tokens if self.outcome is not None else self.prompt_tokens
