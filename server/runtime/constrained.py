"""JSON-schema constrained decoding for in-process backends, on llguidance.

A generation asked for `json_schema` decodes under a token mask: at each step only tokens that keep
the text a prefix of some JSON value valid against the schema may be sampled, and end-of-generation
is allowed only once the value is complete. llguidance compiles the schema lazily (about a
millisecond) and computes each mask in tens of microseconds; see docs/ARCHITECTURE.md,
"Constrained decoding: why llguidance", for the measurements against xgrammar.

The JSON is compact (no whitespace between tokens): a small model given free whitespace tends to
spend its whole budget on newlines and spaces.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

from lqmf.base.errors import FeatureUnsupported, InvalidRequest, LQMFError

log = logging.getLogger(__name__)

# llguidance's words for a valid schema it cannot enforce (it refuses rather than ignoring a keyword):
# "Unimplemented keys: [...]", "... not supported", "min/maxProperties only supported when ...".
_UNSUPPORTED = re.compile(r"unimplemented|not (yet )?supported|unsupported|only supported", re.IGNORECASE)
_COMPILE_OPTIONS = {"whitespace_flexible": False}  # compact JSON: "," and ":" with no spaces


@dataclass(frozen=True)
class GrammarTokenizer:
    """llguidance's view of one HF tokenizer: built once per loaded model (tens of ms), shared by its
    generations. `vocab_size` is the model's logits width, which may exceed the tokenizer's."""

    lltokenizer: Any  # llguidance.LLTokenizer
    vocab_size: int
    eos_ids: tuple[int, ...]

    @classmethod
    def from_hf(cls, tokenizer, vocab_size: int, eos_ids: Iterable[int]) -> "GrammarTokenizer":
        import llguidance.hf

        eos = tuple(sorted(eos_ids)) or (int(tokenizer.eos_token_id),)
        try:
            lltokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(eos))
        except ValueError as exc:  # a slow (Python) tokenizer: llguidance reads the Rust tokenizers' JSON
            raise FeatureUnsupported(f"constrained decoding needs a fast tokenizer: {exc}",
                                     "use a model folder with a tokenizer.json") from exc
        return cls(lltokenizer, vocab_size, eos)

    @classmethod
    def from_llama(cls, vocab, eos_ids: Iterable[int]) -> "GrammarTokenizer":
        """From a llama.cpp vocab (llama-cpp-python's `Llama._model.vocab`), for the in-process GGUF backend."""
        import llama_cpp
        import llguidance.llamacpp

        size = int(llama_cpp.llama_vocab_n_tokens(vocab))
        eos = tuple(sorted(eos_ids)) or (int(llama_cpp.llama_vocab_eos(vocab)),)
        with warnings.catch_warnings():  # llguidance calls a deprecated llama_cpp alias once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=list(eos))
        return cls(tokenizer, size, eos)


def parse_schema(schema_text: str) -> dict:
    """The schema as a dict, or InvalidRequest saying why it cannot be one."""
    try:
        schema = json.loads(schema_text)
    except ValueError as exc:
        raise InvalidRequest(f"json_schema is not valid JSON: {exc}", "send a JSON schema object") from exc
    if schema is True:
        return {}  # the schema that admits any JSON value
    if schema is False:
        raise InvalidRequest("json_schema is `false`, which no value satisfies", "send a satisfiable schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(f"json_schema must be a JSON object (or true), not {type(schema).__name__}",
                             'send e.g. {"type": "object"}')
    return schema


class JsonConstraint:
    """One generation's grammar state: mask the logits, advance by the chosen token, tell when done.

    Not thread-safe (a generation is one thread's work). The mask is computed into a preallocated
    bitmask (token i is bit i % 32 of int32 word i // 32, little-endian, so numpy's little-order
    unpackbits reads it token by token) and works on torch tensors and numpy arrays alike.
    """

    def __init__(self, matcher, grammar_tokenizer: GrammarTokenizer) -> None:
        import numpy as np

        self.matcher = matcher
        self.vocab_size = grammar_tokenizer.vocab_size
        self.eos_ids = grammar_tokenizer.eos_ids
        self._bitmask = np.zeros((self.vocab_size + 31) // 32, dtype="<i4")

    @classmethod
    def compile(cls, grammar_tokenizer: GrammarTokenizer, schema_text: str) -> "JsonConstraint":
        """Compile a schema (JSON text); InvalidRequest if it is not a usable schema, FeatureUnsupported if
        it uses something llguidance cannot enforce."""
        from llguidance import LLMatcher

        schema = parse_schema(schema_text)
        try:
            grammar = LLMatcher.grammar_from_json_schema(schema, defaults=_COMPILE_OPTIONS)
        except ValueError as exc:
            raise InvalidRequest(f"json_schema cannot be compiled: {exc}", "send a JSON schema object") from exc
        matcher = LLMatcher(grammar_tokenizer.lltokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise schema_error(matcher.get_error())
        for warning in matcher.get_grammar_warnings():
            log.info("json_schema compiled with a warning: %s", warning)
        return cls(matcher, grammar_tokenizer)

    @classmethod
    def for_backend(cls, backend, schema_text: str) -> "JsonConstraint":
        """Compile for a backend exposing `grammar_tokenizer()` (built once per loaded model)."""
        return cls.compile(backend.grammar_tokenizer(), schema_text)

    # -- per step ---------------------------------------------------------------------------------
    def allowed_mask(self):
        """numpy bool [vocab_size]: the tokens the grammar allows next (EOS only when complete)."""
        import numpy as np

        self.matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._bitmask.nbytes)
        self._check()
        return np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: self.vocab_size].astype(bool)

    def apply(self, logits):
        """Set disallowed tokens' logits to -inf, in place (1-D torch tensor or numpy array); returns them."""
        blocked = ~self.allowed_mask()
        width = min(int(logits.shape[-1]), self.vocab_size)
        if hasattr(logits, "masked_fill_"):  # torch
            import torch

            logits[:width].masked_fill_(torch.from_numpy(blocked[:width]), float("-inf"))
        else:
            logits[:width][blocked[:width]] = float("-inf")
        logits[width:] = float("-inf")  # padding rows of the embedding matrix are never JSON
        return logits

    def advance(self, token: int) -> None:
        """Feed the sampled token (an EOS token too: it ends the grammar)."""
        if not self.matcher.consume_token(int(token)):
            self._check()
            raise LQMFError(f"constrained decoding rejected token {token}", "see logs/lqmf.log")

    @property
    def accepts_eos(self) -> bool:
        """The text so far is a complete value (it may still go on, as a number can)."""
        return self.matcher.is_accepting()

    @property
    def done(self) -> bool:
        """Nothing but end-of-generation can follow: the generation is over."""
        return self.matcher.is_stopped()

    def _check(self) -> None:
        if self.matcher.is_error():
            message = self.matcher.get_error()
            log.error("constrained decoding failed: %s", message)
            raise LQMFError(f"constrained decoding failed: {message}", "see logs/lqmf.log")


def schema_error(message: str) -> LQMFError:
    """llguidance's compile error as the request error it is: unsupported feature or invalid schema."""
    if _UNSUPPORTED.search(message):
        return FeatureUnsupported(f"json_schema uses something constrained decoding cannot enforce: {message}",
                                  "drop or rewrite that part of the schema")
    return InvalidRequest(f"json_schema is not a valid schema: {message}", "fix the schema and send it again")
