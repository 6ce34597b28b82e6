"""The Backend interface and the text helpers every backend shares (generation types: lqmf.base.generation)."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Iterator, Optional, Sequence, Union

from lqmf.base.errors import ContextOverflow, FeatureUnsupported, InvalidRequest, LQMFError
from lqmf.base.generation import (
    Chunk,
    EmbeddingBatch,
    EmbeddingInput,
    GenerationParams,
    GenerationResult,
    Message,
    Prompt,
    Timings,
    TokenLogprob,
    collect,
)

FEATURE_WORDS = {"json_schema": "JSON-schema constrained output (response_format, format, tools)",
                 "logprobs": "log-probabilities (logprobs)"}


class StopMatcher:
    """Cuts generated text at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, stopped)."""
        if not self.stops:
            return text, False
        self.pending += text
        # Only the tail can hold a new match: look at what was held back plus the new text.
        hits = [(self.pending.find(s), s) for s in self.stops]
        hits = [(i, s) for i, s in hits if i >= 0]
        if hits:
            index = min(i for i, _ in hits)
            out, self.pending = self.pending[:index], ""
            return out, True
        keep = 0
        for size in range(min(self.longest - 1, len(self.pending)), 0, -1):
            tail = self.pending[-size:]
            if any(s.startswith(tail) for s in self.stops):
                keep = size
                break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Backend(ABC):
    """A loaded (or loadable) model. Not thread-safe: the manager gives each one a single worker."""

    format: str = ""
    can_embed: bool = False
    # Optional generation features this backend enforces (GenerationParams.features names them).
    features: frozenset[str] = frozenset()
    # Requests this backend runs at once (the manager gives it that many workers); only an engine
    # with parallel slots is safe to call from several threads.
    parallel: int = 1

    def __init__(self, record: Any, *, n_ctx: Optional[int] = None, threads: Optional[int] = None) -> None:
        self.record = record
        self.requested_ctx = n_ctx
        self.threads = threads
        self.loaded = False

    # -- lifecycle ---------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> None:
        """Load weights; raise ModelLoadError with the reason on failure."""

    @abstractmethod
    def unload(self) -> None:
        """Free the weights."""

    @abstractmethod
    def footprint(self) -> int:
        """Bytes this model holds in memory now (weights + caches), as measured or reported."""

    def engine_info(self) -> dict[str, Any]:
        """How this model is executed, for /models (the server engine adds its process and slots)."""
        return {"engine": "in-process", "slots": self.parallel}

    # -- text ----------------------------------------------------------------------------------
    @property
    @abstractmethod
    def context_length(self) -> int:
        """Tokens the loaded context window holds."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids the model knows."""

    @abstractmethod
    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        ...

    @abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str:
        ...

    @abstractmethod
    def apply_chat_template(self, messages: list[Message]) -> str:
        """The prompt text for a conversation, ready for a generation by the assistant."""

    def chat_prompt_ids(self, messages: list[Message]) -> list[int]:
        """Token ids of a chat prompt (the template already carries any BOS it wants)."""
        return self.tokenize(self.apply_chat_template(messages), add_special=False)

    # -- generation -----------------------------------------------------------------------------
    @abstractmethod
    def _token_stream(self, prompt_ids: list[int],
                      params: GenerationParams) -> Iterator[Union[int, tuple[int, TokenLogprob]]]:
        """Yield sampled token ids one by one (with their TokenLogprob when params.logprobs is set);
        stop at an end-of-generation token (not yielded)."""

    @abstractmethod
    def _decoder(self, prompt_ids: list[int]) -> "IncrementalDecoder":
        ...

    def require(self, params: GenerationParams) -> None:
        """FeatureUnsupported, naming what is missing, when this backend cannot do all that `params` ask."""
        missing = [f for f in params.features() if f not in self.features]
        if missing:
            raise FeatureUnsupported(
                f"{self.record.name} ({self.describe()}) cannot do {' and '.join(FEATURE_WORDS[f] for f in missing)}",
                self.feature_hint(missing))
        if params.num_ctx is not None and params.num_ctx > self.context_length:
            raise FeatureUnsupported(
                f"num_ctx {params.num_ctx} is larger than the context {self.record.name} is loaded with "
                f"({self.context_length} tokens per request)",
                f"ask for at most {self.context_length}, or reload the model with a larger LQMF_CONTEXT_LENGTH")

    def describe(self) -> str:
        """The format and engine, in words, for error messages."""
        return f"{self.format}"

    def feature_hint(self, missing: list[str]) -> str:
        return "leave those fields out for this model"

    def window(self, params: GenerationParams) -> int:
        """Tokens this request's prompt and generation may use together."""
        return min(self.context_length, params.num_ctx) if params.num_ctx else self.context_length

    def check_fits(self, prompt_ids: Sequence[int], window: Optional[int] = None) -> None:
        """Raise ContextOverflow with the numbers when the prompt leaves no room to generate."""
        if not prompt_ids:
            raise InvalidRequest("the prompt is empty (no tokens to start from)", "send some text to continue")
        n_ctx = window or self.context_length
        if len(prompt_ids) >= n_ctx:
            raise ContextOverflow(
                f"the prompt is {len(prompt_ids)} tokens but {self.record.name}'s context window holds "
                f"{n_ctx} (and at least one token must be generated)",
                "shorten the prompt or the conversation, or load the model with a larger context",
            )

    def stream(
        self, prompt_ids: list[int], params: GenerationParams, cancel: Optional[threading.Event] = None
    ) -> Iterator[Chunk]:
        """Generate from prompt ids, yielding text deltas; the final chunk carries finish_reason and timings."""
        window = self.window(params)
        self.check_fits(prompt_ids, window)
        budget = min(params.max_tokens, window - len(prompt_ids))
        timings = Timings(prompt_tokens=len(prompt_ids))
        decoder = self._decoder(prompt_ids)
        stops = StopMatcher(params.stop)
        start = time.perf_counter()
        first_at: Optional[float] = None
        finish, hit_stop_string = "stop", False
        generated: list[int] = []
        tokens = self._token_stream(prompt_ids, params)
        try:
            for item in tokens:
                if first_at is None:
                    first_at = time.perf_counter()
                token, logprob = item if isinstance(item, tuple) else (item, None)  # (id, TokenLogprob) when asked
                generated.append(token)
                text, hit_stop_string = stops.feed(decoder.add(token))
                yield Chunk(text, [token], logprobs=[logprob] if logprob is not None else [])
                if hit_stop_string:
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if len(generated) >= budget:
                    finish = "length"
                    break
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
        tail = ""
        if finish != "cancelled" and not hit_stop_string:
            tail, hit_stop_string = stops.feed(decoder.flush())
            if not hit_stop_string:
                tail += stops.flush()  # a held-back prefix that never became a stop string
        end = time.perf_counter()
        timings.completion_tokens = len(generated)
        timings.total_s = end - start
        timings.prompt_eval_s = (first_at or end) - start
        timings.eval_s = end - (first_at or end)
        yield Chunk(tail, [], finish_reason=finish, timings=timings)

    def generate(
        self, prompt_ids: list[int], params: GenerationParams, cancel: Optional[threading.Event] = None
    ) -> GenerationResult:
        """Non-streaming generation, built on stream()."""
        return collect(self.stream(prompt_ids, params, cancel))

    # -- prompts as given (a conversation, a text, or token ids) -----------------------------------
    def prompt_ids(self, prompt: "Prompt") -> list[int]:
        """Token ids for a conversation (chat template applied), a text, or ids given as they are."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_special=True)
        if prompt and isinstance(prompt[0], dict):
            return self.chat_prompt_ids(list(prompt))  # type: ignore[arg-type]
        return [int(t) for t in prompt]  # type: ignore[union-attr]

    def stream_prompt(self, prompt: "Prompt", params: GenerationParams,
                      cancel: Optional[threading.Event] = None) -> Iterator[Chunk]:
        """stream() of a prompt as given; a remote model takes the text itself (it has no tokenizer here)."""
        ids = self.prompt_ids(prompt)
        if cancel is not None and cancel.is_set():
            yield Chunk("", [], finish_reason="cancelled", timings=Timings(prompt_tokens=len(ids)))
            return
        yield from self.stream(ids, params, cancel)

    def generate_prompt(self, prompt: "Prompt", params: GenerationParams,
                        cancel: Optional[threading.Event] = None) -> GenerationResult:
        """generate() of a prompt as given."""
        return self.generate(self.prompt_ids(prompt), params, cancel)

    def reset_cache(self) -> None:
        """Forget any prompt prefix kept from the last generation (benchmarks time the prompt in full).

        A backend that keeps no prefix has nothing to forget: this default does nothing."""
        return None

    # -- embeddings ---------------------------------------------------------------------------
    @property
    def embedding_pooling(self) -> str:
        """How token states become one vector (mean unless the model says otherwise)."""
        return "mean"

    def embed(self, texts: Sequence[EmbeddingInput], *, normalize: bool = True,
              truncate: bool = False) -> list[list[float]]:
        """One vector per input (a text or a list of token ids), optionally L2-normalised."""
        return self.embed_batch(texts, normalize=normalize, truncate=truncate).vectors.tolist()

    def embed_batch(self, inputs: Sequence[EmbeddingInput], *, normalize: bool = True, truncate: bool = False,
                    offset: int = 0) -> EmbeddingBatch:
        """Vectors (numpy float32) and token counts; `offset` numbers the inputs in errors."""
        import numpy as np

        if not self.can_embed:
            raise LQMFError(f"{self.record.name} ({self.format}) cannot make embeddings",
                            "use a model that can embed")
        ids = [self.embedding_ids(item, truncate=truncate, index=offset + i) for i, item in enumerate(inputs)]
        if not ids:
            return EmbeddingBatch(np.zeros((0, 0), dtype=np.float32), [], self.embedding_pooling)
        vectors = np.asarray(self._embed_ids(ids), dtype=np.float32)
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return EmbeddingBatch(vectors, [len(x) for x in ids], self.embedding_pooling)

    def embedding_ids(self, item: EmbeddingInput, *, truncate: bool, index: int = 0) -> list[int]:
        """Token ids of one input, checked against the vocabulary and the context window."""
        if isinstance(item, str):
            ids = self.tokenize(item)
        else:
            ids = [int(t) for t in item]
            vocab = self.vocab_size
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise InvalidRequest(f"input {index} has token id {bad[0]}, outside {self.record.name}'s "
                                     f"vocabulary of {vocab}", f"send token ids from 0 to {vocab - 1}")
        if not ids:
            raise InvalidRequest(f"input {index} has no tokens", "send some text (or token ids) to embed")
        limit = self.context_length
        if len(ids) > limit:
            if not truncate:
                raise ContextOverflow(
                    f"input {index} is {len(ids)} tokens but {self.record.name}'s context window holds {limit}",
                    "shorten it, or ask for truncation (truncate=true) to embed its first tokens only",
                )
            ids = ids[:limit]
        return ids

    def _embed_ids(self, batch: list[list[int]]):
        """Pooled, unnormalised vectors [len(batch), dim] of token-id lists that fit the context."""
        raise LQMFError(f"{self.record.name} ({self.format}) cannot make embeddings", "use a model that can embed")

    def logits(self, ids: Sequence[int]):
        """Full next-token logits for every position of `ids` (numpy array [len(ids), vocab])."""
        raise LQMFError(f"{self.record.name} ({self.format}) cannot return full logits here",
                        "use a transformers model (hf, bnb, gptq) for logits")


class IncrementalDecoder(ABC):
    """Turns a growing list of token ids into text deltas in linear time."""

    @abstractmethod
    def add(self, token: int) -> str:
        """Text that became final with this token (may be empty while a character is incomplete)."""

    @abstractmethod
    def flush(self) -> str:
        """Whatever is left when generation ends."""
