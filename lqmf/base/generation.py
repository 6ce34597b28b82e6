"""What a generation is, for every layer: its parameters, streamed chunks, results, timings and finish reasons.

Backends (server.runtime.backends) produce these; the library, the faces and the measurements read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Sequence, Union

from lqmf.base import sampling
from lqmf.base.errors import LQMFError
from lqmf.base.sampling import DEFAULTS, GREEDY_BELOW

Message = dict[str, str]
# Why a generation ended: a stop (end of generation or a stop string), the token limit, or the caller.
FinishReason = Literal["stop", "length", "cancelled"]



@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; temperature 0 (or below GREEDY_BELOW) means greedy decoding."""

    # Defaults and limits come from lqmf.base.sampling's table, which the HTTP schemas publish too.
    max_tokens: int = DEFAULTS["max_tokens"]
    temperature: float = DEFAULTS["temperature"]
    top_p: float = DEFAULTS["top_p"]
    top_k: int = DEFAULTS["top_k"]
    min_p: float = DEFAULTS["min_p"]
    seed: Optional[int] = DEFAULTS["seed"]
    stop: tuple[str, ...] = ()
    repeat_penalty: float = DEFAULTS["repeat_penalty"]
    ignore_eos: bool = False  # keep generating past end-of-generation tokens (fixed-length benchmarks)
    # Constrained output: the text must be one JSON value valid against this JSON schema (JSON text,
    # canonical). A backend that cannot enforce it refuses the request (FeatureUnsupported), never
    # generates unconstrained.
    json_schema: Optional[str] = None
    # Per-token log-probabilities: None = off; n >= 0 = the chosen token's plus the n most likely.
    logprobs: Optional[int] = DEFAULTS["logprobs"]
    # The request's own context window (Ollama's num_ctx): prompt + generation must fit it. At most the
    # loaded context; a larger one is refused, never silently ignored.
    num_ctx: Optional[int] = DEFAULTS["num_ctx"]
    # Reuse a cached prefix of an earlier prompt (the engine's prompt cache); benchmarks turn it off so
    # that the whole prompt is timed.
    cache_prompt: bool = True

    def features(self) -> list[str]:
        """The optional features these parameters ask of a backend (see Backend.features)."""
        return [name for name, on in (("json_schema", self.json_schema is not None),
                                      ("logprobs", self.logprobs is not None)) if on]

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in sampling.LIMITS if hasattr(self, name)}
        problems = sampling.problems({**values, "stop": self.stop})
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def seed_bits(self, bits: int) -> Optional[int]:
        """The seed folded into an unsigned `bits`-bit integer (llama.cpp takes 32 bits, torch 64)."""
        return None if self.seed is None else self.seed % (1 << bits)


@dataclass
class Timings:
    """Measured durations of one generation, in seconds."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_eval_s: float = 0.0  # prompt processing up to the first sampled token
    eval_s: float = 0.0  # decoding after the first token
    total_s: float = 0.0

    @property
    def time_to_first_token_s(self) -> float:
        return self.prompt_eval_s

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


@dataclass
class TokenLogprob:
    """One generated token's log-probability and its most likely alternatives (OpenAI's shape)."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]] = field(default_factory=list)  # (token, logprob, bytes)

    def openai(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": b} for t, lp, b in self.top]}


@dataclass
class Chunk:
    """One step of a stream: new text and token ids; the last chunk has finish_reason and timings."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: Optional[FinishReason] = None
    timings: Optional[Timings] = None
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per token in token_ids, when asked


@dataclass
class GenerationResult:
    """A whole generation, built from its stream."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    timings: Timings
    logprobs: list[TokenLogprob] = field(default_factory=list)
    model: Optional[str] = None  # the model that answered (a request for `default` may fall back)

    @property
    def prompt_tokens(self) -> int:
        return self.timings.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.timings.completion_tokens


@dataclass
class EmbeddingBatch:
    """Pooled vectors of a batch of inputs, one row each, with the tokens each one used."""

    vectors: Any  # numpy float32 [n_inputs, dim]
    token_counts: list[int]
    pooling: str  # how token states became one vector: mean | cls | last


EmbeddingInput = Union[str, Sequence[int]]
# A prompt is a conversation (chat template applied), raw text, or token ids.
Prompt = Union[list[Message], str, Sequence[int]]


def collect(chunks: Iterable[Chunk]) -> GenerationResult:
    """Join a stream of chunks into one result."""
    parts: list[str] = []
    ids: list[int] = []
    logprobs: list[TokenLogprob] = []
    last: Optional[Chunk] = None
    for chunk in chunks:
        parts.append(chunk.text)
        ids.extend(chunk.token_ids)
        logprobs.extend(chunk.logprobs)
        last = chunk
    if last is None or last.timings is None or last.finish_reason is None:
        raise LQMFError("the generation ended without a final chunk", "see logs/lqmf.log")
    return GenerationResult("".join(parts), ids, last.finish_reason, last.timings, logprobs)
