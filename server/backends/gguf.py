"""GGUF models through llama-cpp-python, with a linear-time streaming loop."""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
from typing import Iterator, Optional, Sequence

from lqmf.errors import ModelLoadError
from server.backends.base import Backend, GenerationParams, IncrementalDecoder, Message
from server.backends.chat import render_chat

log = logging.getLogger(__name__)

DEFAULT_CTX = 4096


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
    can_embed = False

    def __init__(self, record, *, n_ctx: Optional[int] = None, threads: Optional[int] = None) -> None:
        super().__init__(record, n_ctx=n_ctx, threads=threads)
        self.llm = None
        self._template: Optional[str] = None

    def load(self) -> None:
        from llama_cpp import Llama

        if not self.record.usable:
            raise ModelLoadError(f"{self.record.name} is not usable: {self.record.reason}", "see `list models`")
        trained = self.record.context_length or DEFAULT_CTX
        n_ctx = min(self.requested_ctx or DEFAULT_CTX, trained)
        try:
            self.llm = Llama(
                model_path=str(self.record.path), n_ctx=n_ctx, n_threads=self.threads or default_threads(),
                n_batch=min(512, n_ctx), verbose=False,
            )
        except Exception as exc:  # llama.cpp reports every load failure as a bare ValueError
            raise ModelLoadError(
                f"llama.cpp could not load {self.record.name} ({self.record.path.name}): {exc}",
                "the file may be truncated or not a llama.cpp model; re-create it or remove it",
            ) from exc
        self._template = self.llm.metadata.get("tokenizer.chat_template")
        self.loaded = True

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self.loaded = False

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
        if self.llm is None:
            return int(self.record.context_length or DEFAULT_CTX)
        # llama.cpp pads its context (to a multiple of 256), while llama-cpp-python's token buffer keeps
        # the size that was asked for: a prompt between the two overflowed that buffer (found by fuzzing).
        return min(int(self.llm.n_ctx()), int(self.llm.input_ids.shape[0]))

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
        vocab = self.llm._model.vocab
        # reset=True still reuses the longest cached prefix of the previous prompt (llama-cpp-python).
        for token in self.llm.generate(
            prompt_ids, top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
            temp=0.0 if params.greedy else params.temperature, repeat_penalty=params.repeat_penalty, reset=True,
        ):
            if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                return
            yield int(token)

    def logits(self, ids: Sequence[int]):
        """Full logits for every position, from a short-lived context made for it.

        The serving context keeps logits of the last token only (that is what makes it fast); a
        logits_all context holds an [n_ctx, vocab] array, so one is made per call, sized to `ids`,
        and freed at once. Weights are memory-mapped, so the second handle costs no second copy.
        """
        import numpy as np
        from llama_cpp import Llama

        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("no tokens to score")
        self.check_fits(ids[:-1])
        scorer = Llama(
            model_path=str(self.record.path), n_ctx=len(ids), n_batch=min(512, len(ids)), logits_all=True,
            n_threads=self.threads or default_threads(), verbose=False,
        )
        try:
            scorer.eval(ids)
            return np.array(scorer.scores[: len(ids)], dtype=np.float32, copy=True)
        finally:
            scorer.close()
