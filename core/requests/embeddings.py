"""Embedding requests: prompted, decoded from OpenAI token ids, limited by their policy, sent to
the served model, and turned into an outcome shaped as asked (``dimensions``) that names the
embedding space of its vectors (``core.space``).

Token ids are read in one vocabulary: the request's own (``vocabulary``, vLLM-style clients that
can say it), else the route's ``token_ids`` (cl100k_base, OpenAI's, by default; or the model's
own). Ids outside it are a 400 naming it, never other words. ``keep_tokens`` (vLLM's
``truncate_prompt_tokens``) reads each input to that many tokens, announced like every cut. What
the request asks of the model beyond its inputs (``variant``: ``normalize``, ``add_special_tokens``)
joins its ``fields`` in the cache key and the space's fingerprint (``output_fields``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from core.config.routing import CL100K
from core.errors import InvalidRequest
from core.kinds import EMBEDDINGS, Kind
from core.requests.common import EmbeddingsOutcome, usage
from core.requests.texts import TextInputs
from core.requests.truncation import BY_NAME, CUT_END, CUT_START, REFUSE, OverLimit
from core.space import cache_fields, fingerprints
from core.tokenization import decode_cl100k
from core.variant import DEFAULT_VARIANT
from core.vectors import shape_vectors

if TYPE_CHECKING:
    from core.config import ModelRoute
    from core.served import ModelCall, ServedModel
    from core.tokenization import TokenCounter


@dataclass(slots=True)
class EmbeddingsRequest(TextInputs):
    name: ClassVar[str] = "embeddings"
    kind: ClassVar[Kind] = EMBEDDINGS

    dimensions: int | None = None
    user: str | None = None
    truncation: OverLimit | None = None  # the request's own choice (REFUSE or CUT_END); None: it says nothing
    #: the output types its answer carries (float, base64, int8, uint8, binary, ubinary), as its codec renders them
    outputs: tuple[str, ...] = ("float",)
    #: request-level fields that change what comes back, each declared in ``core.space.REQUEST_FIELDS``
    #: (its flags say whether it enters the cache key, the space's fingerprint, or both)
    fields: dict[str, Any] = field(default_factory=dict)
    vocabulary: str | None = None  # what its token ids are (cl100k_base or model); None: the route's token_ids
    keep_tokens: int | None = None  # each input read to this many tokens (special tokens included)
    keep_end: OverLimit = CUT_START  # which part keep_tokens keeps: CUT_START the last tokens, CUT_END the first

    def over_limit_policy(self, route: ModelRoute, flag_end: bool) -> OverLimit:
        """Over the model's limit: the request's choice, else the route's, else the truncate_inputs
        flag's (cut the end), else refuse."""
        if self.truncation is not None:
            return self.truncation
        if route.truncation is not None:
            return BY_NAME[route.truncation]
        return CUT_END if flag_end else REFUSE

    @property
    def needs_counts(self) -> bool:
        """The request itself needs its tokens counted (a limit it set)."""
        return self.truncation is REFUSE

    def check_route(self, route: ModelRoute) -> None:
        if self.dimensions is not None and not route.allow_dimensions:
            raise InvalidRequest(f"The model '{route.alias}' does not support 'dimensions'", param="dimensions")
        if self.is_tokens and (self.vocabulary or route.token_ids) == CL100K:
            # What an OpenAI client means by token ids: its own cl100k_base encoding of a text.
            self.inputs, self.is_tokens = decode_cl100k(self.inputs), False  # type: ignore[arg-type]
        self.apply_prompt(route)

    def apply_caps(self, counter: TokenCounter) -> list[int]:
        """Cut each input over ``keep_tokens`` to that many (its last ones, or its first); the ones cut."""
        cap = self.keep_tokens
        if cap is None:
            return []
        over = [i for i, n in enumerate(self.count(counter)) if n > cap]
        cut = self.truncate_start if self.keep_end is CUT_START else self.truncate
        # the cut counts special tokens; an input read without them has room for that many more
        room = cap if self.is_tokens or self.variant.add_special_tokens else cap + counter.specials
        for i in over:
            cut(i, counter, room)
        return over

    @property
    def output_fields(self) -> dict[str, Any]:
        """Every request-level field that changes what comes back: ``fields`` and the variant's."""
        variant = self.variant
        return self.fields if variant is DEFAULT_VARIANT else {**self.fields, **variant.changed()}

    def spaces(self, model: ServedModel, width: int | None = None) -> tuple[str, ...] | None:
        """The embedding spaces of the answer, one per output type (``core.space``), for vectors
        ``width`` wide before ``dimensions`` (default: the model's); None while no width is known."""
        dims = self.dimensions or width or model.width
        if dims is None:
            return None
        fields = self.fields if self.variant is DEFAULT_VARIANT else self.output_fields
        return fingerprints(model.space, self.input_type, fields, dims, self.outputs)

    async def run(self, model: ServedModel, call: ModelCall, tokens: int | None) -> EmbeddingsOutcome:
        """Embed on ``model`` and shape the vectors as asked; ``tokens`` as counted before the call."""
        if self.is_tokens:  # the model's own ids: outside its vocabulary is a 400, before any cache or queue
            model.counter.check_ids(self.inputs, f"the model '{model.alias}'")  # type: ignore[arg-type]
        if self.fields:  # the variant's fields the served model adds itself
            call = replace(call, shaping=cache_fields(self.fields))
        result = await model.embed(self.inputs, call, is_tokens=self.is_tokens, variant=self.variant)
        vectors = result.vectors  # checked by the model: one row per input, its width, finite
        if self.dimensions is not None and self.dimensions > vectors.shape[1]:
            raise InvalidRequest(f"'dimensions' is {self.dimensions}, but '{model.alias}' has "
                                 f"{vectors.shape[1]}", param="dimensions")
        return EmbeddingsOutcome(model.alias, shape_vectors(vectors, self.dimensions, self.variant.normalize),
                                 usage(tokens, result.prompt_tokens, lambda: self.count(model.counter)),
                                 cache_hits=result.cache_hits, spaces=self.spaces(model, vectors.shape[1]))
