"""GGUF models through llama-cpp-python, with a linear-time streaming loop."""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import logging
import os
import threading
from typing import Iterator, Optional, Sequence

from lqmf.base.errors import LQMFError, ModelLoadError
from lqmf.base.generation import GenerationParams, Message
from server.runtime.backends.base import Backend, IncrementalDecoder
from server.runtime.backends.chat import render_chat

log = logging.getLogger(__name__)

DEFAULT_CTX = 4096

# GGUF `<arch>.pooling_type` values (llama.cpp's enum llama_pooling_type) that give one vector per input.
# Absent, NONE (per-token) and RANK (a reranker's score) fall back to mean pooling.
POOLING_NAMES = {1: "mean", 2: "cls", 3: "last"}
EMBED_CTX_STEP = 256  # embedding contexts are sized in these steps (see _embed_ids)
EMBED_PACK_TOKENS = 512  # tokens of several short inputs decoded together (see _embed_ids)


def default_threads() -> int:
    """Physical cores, leaving one logical core free for Python (the caller, the HTTP server).

    llama.cpp's compute threads spin at barriers; when they hold every core, each wake-up of the
    thread that consumes the stream preempts one of them and stalls the whole step (measured on
    2 cores: 6x slower streaming with 2 threads than with 1).
    """
    import psutil

    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return max(1, min(physical, logical - 1))


class PieceDecoder(IncrementalDecoder):
    """Per-token pieces (bytes) through an incremental UTF-8 decoder: O(1) work per token."""

    def __init__(self, piece) -> None:
        self.piece = piece
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        return self.utf8.decode(self.piece(token))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


class GGUFBackend(Backend):
    """A .gguf file loaded with llama_cpp.Llama."""

    format = "gguf"
    can_embed = True
    features = frozenset({"json_schema"})
    # llama-cpp-python's quiet mode (verbose=False) swaps the whole process's stdout/stderr file
    # descriptors while a Llama is made or closed; two at once on different threads can leave both
    # pointing at /dev/null for good (seen under the load test). Every make and close takes this lock.
    _native_lock = threading.Lock()

    def __init__(self, record, *, n_ctx: Optional[int] = None, threads: Optional[int] = None, repack: bool = True,
                 inprocess_refusal: Optional[str] = None) -> None:
        super().__init__(record, n_ctx=n_ctx, threads=threads)
        # As the smoke check (server.runtime.gguf_smoke) found llama.cpp runs in this process on this CPU.
        self.repack = repack
        self.inprocess_refusal = inprocess_refusal
        self.llm = None
        self._template: Optional[str] = None
        self._n_ctx: Optional[int] = None
        self._grammar_tokenizer = None

    def describe(self) -> str:
        return "gguf, in-process engine"

    def feature_hint(self, missing: list[str]) -> str:
        return ("the llama-server engine does it: build it with `make tools` (LQMF_GGUF_ENGINE=server), "
                "or leave those fields out")

    def load(self) -> None:
        if not self.record.usable:
            raise ModelLoadError(f"{self.record.name} is not usable: {self.record.reason}", "see `list models`")
        trained = self.record.context_length or DEFAULT_CTX
        n_ctx = min(self.requested_ctx or DEFAULT_CTX, trained)
        self._open(n_ctx=n_ctx, n_threads=self.threads or default_threads(), n_batch=min(512, n_ctx))
        # llama.cpp pads its context (to a multiple of 256), while llama-cpp-python's token buffer keeps
        # the size that was asked for: a prompt between the two overflowed that buffer (found by fuzzing).
        self._n_ctx = min(int(self.llm.n_ctx()), int(self.llm.input_ids.shape[0]))
        self.loaded = True

    def _open(self, **options) -> None:
        """Open the file as self.llm (a readable ModelLoadError if llama.cpp cannot) and read its template."""
        try:
            with self._native_lock:
                self.llm = self._new_llama(**options)
        except LQMFError:  # refused by the smoke check's verdict: its reason, as it is
            raise
        except Exception as exc:  # llama.cpp reports every load failure as a bare ValueError
            raise ModelLoadError(
                f"llama.cpp could not load {self.record.name} ({self.record.path.name}): {exc}",
                "the file may be truncated or not a llama.cpp model; re-create it or remove it",
            ) from exc
        self._template = self.llm.metadata.get("tokenizer.chat_template")

    def unload(self) -> None:
        self._close_llm()
        self._grammar_tokenizer = None
        self.loaded = False

    def _new_llama(self, **options):
        """A llama_cpp.Llama over this file, made as the smoke check found safe; call it under _native_lock.

        Weights (anything but a vocab-only handle) are refused where the check saw llama.cpp crash in
        process even with repacking off: a crash here would take the server or the shell down with it.
        """
        from llama_cpp import Llama

        from lqmf.base.gguf_check import repacking_off
        from lqmf.base.llama_log import route_llama_log

        route_llama_log()
        if self.inprocess_refusal and not options.get("vocab_only"):
            raise ModelLoadError(f"{self.record.name} cannot run in this process: {self.inprocess_refusal}",
                                 "serve it on llama-server (`make tools`), or rebuild with `make install`")
        with contextlib.nullcontext() if self.repack or options.get("vocab_only") else repacking_off():
            return Llama(model_path=str(self.record.path), verbose=False, **options)

    def _close_llm(self) -> None:
        if self.llm is not None:
            with self._native_lock:
                self.llm.close()
        self.llm = None

    def grammar_tokenizer(self):
        """llguidance's view of this model's vocabulary, built once per load (constrained decoding)."""
        if self._grammar_tokenizer is None:
            import llama_cpp

            from server.runtime.constrained import GrammarTokenizer

            vocab = self.llm._model.vocab
            eog = [t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
            self._grammar_tokenizer = GrammarTokenizer.from_llama(vocab, eog)
        return self._grammar_tokenizer

    def footprint(self) -> int:
        import llama_cpp

        if self.llm is None:
            return 0
        weights = int(llama_cpp.llama_model_size(self.llm.model))
        layers = int(llama_cpp.llama_model_n_layer(self.llm.model))
        # K and V, f16, for every position of the allocated context (llama.cpp allocates it at load).
        kv = 2 * 2 * layers * self.context_length * int(self.record.kv_width or 0)
        return weights + kv

    @property
    def context_length(self) -> int:
        # Read once at load: info() asks from any thread, and a concurrent unload frees the context
        # (calling n_ctx() on it then was a segfault, found by the load test).
        if self.llm is None or self._n_ctx is None:
            return int(self.record.context_length or DEFAULT_CTX)
        return self._n_ctx

    @property
    def vocab_size(self) -> int:
        return int(self.llm.n_vocab())

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def detokenize(self, ids: Sequence[int]) -> str:
        return b"".join(self._piece(t) for t in ids).decode("utf-8", errors="replace")

    def _special_text(self, token: int) -> str:
        return self._piece(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def apply_chat_template(self, messages: list[Message]) -> str:
        return render_chat(
            self._template, messages,
            bos_token=self._special_text(self.llm.token_bos()), eos_token=self._special_text(self.llm.token_eos()),
        )

    def _piece(self, token: int, special: bool = False) -> bytes:
        import llama_cpp

        vocab = self.llm._model.vocab
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, 64, 0, special)
        if n < 0:  # the piece is longer than the buffer: llama.cpp returns -size
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def _decoder(self, prompt_ids: list[int]) -> IncrementalDecoder:
        return PieceDecoder(self._piece)

    def reset_cache(self) -> None:
        if self.llm is not None:
            self.llm.reset()  # n_tokens = 0: the next eval clears the KV cache from position 0

    def _token_stream(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[int]:
        import llama_cpp

        if params.seed is not None:
            self.llm.set_seed(params.seed_bits(32))
        # llguidance, as for transformers formats: llama-cpp-python's own JSON-schema grammar ignores
        # numeric bounds (measured: 6 of 8 sampled replies broke a maximum).
        constraint = processors = None
        if params.json_schema is not None:
            from llama_cpp import LogitsProcessorList

            from server.runtime.constrained import JsonConstraint

            constraint = JsonConstraint.for_backend(self, params.json_schema)
            processors = LogitsProcessorList([lambda _ids, scores: constraint.apply(scores)])
        vocab = self.llm._model.vocab
        # reset=True still reuses the longest cached prefix of the previous prompt (llama-cpp-python).
        for token in self.llm.generate(
            prompt_ids, top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
            temp=0.0 if params.greedy else params.temperature, repeat_penalty=params.repeat_penalty, reset=True,
            logits_processor=processors,
        ):
            if llama_cpp.llama_vocab_is_eog(vocab, token) and (constraint is not None or not params.ignore_eos):
                return
            if constraint is not None:
                constraint.advance(token)
            yield int(token)
            if constraint is not None and constraint.done:
                return

    def logits(self, ids: Sequence[int]):
        """Full logits for every position, from a short-lived context made for it.

        The serving context keeps logits of the last token only (that is what makes it fast); a
        logits_all context holds an [n_ctx, vocab] array, so one is made per call, sized to `ids`,
        and freed at once. Weights are memory-mapped, so the second handle costs no second copy.
        """
        import numpy as np

        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("no tokens to score")
        self.check_fits(ids[:-1])
        with self._native_lock:
            scorer = self._new_llama(n_ctx=len(ids), n_batch=min(512, len(ids)), logits_all=True,
                                     n_threads=self.threads or default_threads())
        try:
            scorer.eval(ids)
            return np.array(scorer.scores[: len(ids)], dtype=np.float32, copy=True)
        finally:
            with self._native_lock:
                scorer.close()

    def _weights_llm(self):
        """The handle whose weights embeddings run on (the serving one here)."""
        return self.llm

    @property
    def embedding_pooling(self) -> str:
        """The pooling the GGUF metadata names (`<arch>.pooling_type`), else mean."""
        meta = self.llm.metadata if self.llm is not None else {}
        arch = meta.get("general.architecture", "")
        try:
            value = int(meta.get(f"{arch}.pooling_type", 1))
        except ValueError:
            value = 1
        return POOLING_NAMES.get(value, "mean")

    def _embed_ids(self, batch: list[list[int]]):
        """Pooled vectors from a short-lived embedding context on the already loaded weights.

        The serving context keeps no per-token states, so embeddings need a context made with
        embeddings on and a pooling type; it shares the loaded model (no second load, no second copy
        of the weights) and takes ~10 ms to make, so one is made per call, sized to its inputs, and
        freed at once: its KV cache and compute buffers never outlive the call and never need to be
        counted in footprint(). Each decode holds whole sequences (llama.cpp pools per micro-batch, so
        n_ubatch = n_ctx), packed up to that size and llama.cpp's sequence limit.
        """
        import llama_cpp
        import numpy as np
        from llama_cpp import _internals

        llm = self._weights_llm()
        pooling = {v: k for k, v in POOLING_NAMES.items()}[self.embedding_pooling]
        limit = self.context_length
        # Packed sequences share one unified KV cache, so attention (and its scores buffer) grows with the
        # square of the pack: packs stay small unless one input alone needs more. A multiple of 256:
        # llama.cpp pads n_ctx to one, and a smaller n_ubatch then fails a GGML_ASSERT (an abort of the
        # whole process) while pooling. No input exceeds `limit`, so every one fits.
        lengths = [len(ids) for ids in batch]
        wanted = min(limit, max(max(lengths), min(EMBED_PACK_TOKENS, sum(lengths))))
        n_ctx = max(EMBED_CTX_STEP, -(-wanted // EMBED_CTX_STEP) * EMBED_CTX_STEP)
        max_seqs = min(n_ctx, int(llama_cpp.llama_max_parallel_sequences()))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_seq_max, params.kv_unified = max_seqs, True
        params.embeddings, params.pooling_type = True, pooling
        params.n_threads = params.n_threads_batch = self.threads or default_threads()
        # Exact attention, as the serving context and transformers compute it (flash attention rounds through f16).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # The raw context, not _internals.LlamaContext: that one registers itself on the model's exit
        # stack, so one made per call would pile up there until the model unloads.
        ctx = llama_cpp.llama_init_from_model(llm.model, params)  # its log: routed when the model was opened
        if ctx is None:
            raise LQMFError(f"llama.cpp could not make an embedding context for {self.record.name}",
                            "see logs/lqmf.log; memory may be short")
        dim = int(llm.n_embd())
        out = np.empty((len(batch), dim), dtype=np.float32)
        tokens = None
        try:
            tokens = _internals.LlamaBatch(n_tokens=n_ctx, embd=0, n_seq_max=1, verbose=False)
            memory = llama_cpp.llama_get_memory(ctx)
            packed: list[int] = []  # rows of `batch` in the pending decode, in sequence-id order
            used = 0

            def decode() -> None:
                if memory:
                    llama_cpp.llama_memory_clear(memory, True)
                code = llama_cpp.llama_decode(ctx, tokens.batch)
                if code != 0:
                    raise LQMFError(f"llama.cpp failed to embed with {self.record.name} (llama_decode returned {code})",
                                    "see logs/lqmf.log")
                for seq, row in enumerate(packed):
                    pooled = llama_cpp.llama_get_embeddings_seq(ctx, seq)
                    if not pooled:
                        raise LQMFError(f"llama.cpp returned no pooled embedding for {self.record.name}",
                                        "see logs/lqmf.log")
                    out[row] = np.ctypeslib.as_array(pooled, shape=(dim,))
                tokens.reset()

            for row, ids in enumerate(batch):
                if packed and (used + len(ids) > n_ctx or len(packed) >= max_seqs):
                    decode()
                    packed, used = [], 0
                # Every token an output: llama.cpp would mark them itself, logging a warning per decode.
                tokens.add_sequence(ids, len(packed), True)
                packed.append(row)
                used += len(ids)
            decode()
        finally:
            if tokens is not None:
                tokens.close()
            llama_cpp.llama_free(ctx)
        return out
