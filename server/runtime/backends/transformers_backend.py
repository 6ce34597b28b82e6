"""HF, bitsandbytes and GPTQ folders through transformers (GPTQ loaded by GPTQModel), on CPU."""

from __future__ import annotations

import gc
import logging
import os
import re
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

from lqmf.base.encoders import read_layout
from lqmf.base.errors import FeatureUnsupported, ModelLoadError
from lqmf.base.generation import GenerationParams, Message, TokenLogprob
from lqmf.base.log import LOAD_OUTPUT, noise_filtered, route_library_loggers
from lqmf.base.quiet import library_output_logged
from server.runtime.backends.base import Backend, IncrementalDecoder
from server.runtime.backends.chat import render_chat, validate_messages
from server.runtime.backends.pooling import pool

if TYPE_CHECKING:
    from server.runtime.constrained import GrammarTokenizer

log = logging.getLogger(__name__)

# The transformers class a folder loads with, by its role (server.runtime.discovery): an encoder is loaded bare, as
# sentence-transformers loads it (a causal-LM head on BERT would be random, and bitsandbytes cannot build one).
AUTO_CLASS = {"embedding": "AutoModel", "generation": "AutoModelForCausalLM"}
CONTEXT_TOKENS = 4  # prompt tokens kept in the decoder's window so the first piece keeps its space
EMBED_BATCH_TOKENS = 8192  # padded tokens per embedding forward pass (bounds its activations)
BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte-fallback tokens


class WindowDecoder(IncrementalDecoder):
    """Decode only a short sliding window of ids per token (the prefix/read offset method)."""

    def __init__(self, tokenizer, prompt_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-CONTEXT_TOKENS:])
        self.prefix = 0
        self.read = len(self.ids)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before):] if len(after) > len(before) else ""


class TransformersBackend(Backend):
    """A model folder (plain HF, bitsandbytes, or GPTQ) on CPU."""

    can_embed = True
    features = frozenset({"json_schema", "logprobs"})  # llguidance masks; log-softmax of the logits

    def __init__(self, record, *, n_ctx: Optional[int] = None, threads: Optional[int] = None) -> None:
        super().__init__(record, n_ctx=n_ctx, threads=threads)
        self.format = record.format
        self.model = None
        self.tokenizer = None
        self.eos_ids: set[int] = set()
        self._grammar_tokenizer: Optional["GrammarTokenizer"] = None  # built on the first json_schema request
        self._pooling = "mean"  # what the folder's sentence-transformers Pooling module says, read at load

    def load(self) -> None:
        if not self.record.usable:
            raise ModelLoadError(f"{self.record.name} is not usable: {self.record.reason}", "see `list models`")
        path = self.record.path
        self._grammar_tokenizer = None  # it belongs to the tokenizer loaded below
        try:
            # Libraries print while they load (GPTQModel's ~50-line banner, transformers' "Loading weights" bar,
            # torch's warnings): to the log, where lqmf.log's NOISE keeps them at DEBUG.
            with library_output_logged(noise_filtered(LOAD_OUTPUT), logging.INFO):
                self.tokenizer, self.model = self._load_folder(path)
        except Exception as exc:  # any library failure becomes one readable error
            self.model = self.tokenizer = None
            raise ModelLoadError(f"could not load {self.record.name}: {exc}", "check the folder's files") from exc
        self.model.eval()
        layout = read_layout(path)
        self._pooling = layout.pooling if layout is not None else "mean"
        generation_config = getattr(self.model, "generation_config", None)
        eos = generation_config.eos_token_id if generation_config else None
        ids = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(i) for i in ids if i is not None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(self.tokenizer.eos_token_id))
        self.loaded = True

    def _load_folder(self, path):
        """The folder's tokenizer and model, by format."""
        from transformers import AutoTokenizer

        route_library_loggers()  # transformers' and torch's own terminal handlers (both imported now): to the log
        tokenizer = AutoTokenizer.from_pretrained(path)
        if self.format == "gptq":
            # transformers v5 loads GPTQ only through optimum + GPTQModel; GPTQModel alone suffices.
            from gptqmodel import GPTQModel

            return tokenizer, GPTQModel.load(str(path), device="cpu").model
        import transformers

        auto = getattr(transformers, AUTO_CLASS.get(self.record.role, "AutoModelForCausalLM"))
        return tokenizer, auto.from_pretrained(path, device_map="cpu")

    def unload(self) -> None:
        self.model = self.tokenizer = self._grammar_tokenizer = None
        self.loaded = False
        gc.collect()

    def footprint(self) -> int:
        if self.model is None:
            return 0
        return int(self.model.get_memory_footprint())

    @property
    def context_length(self) -> int:
        trained = int(self.record.context_length or 2048)
        return min(self.requested_ctx, trained) if self.requested_ctx else trained

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        # verbose=False: text longer than the model's context is tokenized whole on purpose (fidelity windows
        # it); the length check belongs to generation (ContextOverflow), not to transformers' warning.
        return list(self.tokenizer(text, add_special_tokens=add_special, verbose=False)["input_ids"])

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def apply_chat_template(self, messages: list[Message]) -> str:
        validate_messages(messages)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_chat(None, messages, bos_token=self.tokenizer.bos_token or "",
                           eos_token=self.tokenizer.eos_token or "")

    def _decoder(self, prompt_ids: list[int]) -> IncrementalDecoder:
        return WindowDecoder(self.tokenizer, prompt_ids)

    def grammar_tokenizer(self) -> "GrammarTokenizer":
        """llguidance's view of this model's tokenizer, built once per load (constrained decoding)."""
        if self._grammar_tokenizer is None:
            from server.runtime.constrained import GrammarTokenizer

            width = max(len(self.tokenizer), int(getattr(self.model.config, "vocab_size", 0) or 0))
            self._grammar_tokenizer = GrammarTokenizer.from_hf(self.tokenizer, width, self.eos_ids)
        return self._grammar_tokenizer

    def _token_stream(self, prompt_ids: list[int],
                      params: GenerationParams) -> Iterator[Union[int, tuple[int, TokenLogprob]]]:
        """Sampled ids, each with its TokenLogprob when params.logprobs is set.

        Under a json_schema the logits are masked before sampling (greedy or not), end-of-generation
        is allowed only once the value is complete, and the stream ends as soon as nothing else can
        follow. Log-probabilities are the model's own distribution (log_softmax of the raw logits,
        before repeat penalty, temperature or mask), as OpenAI reports them.
        """
        import torch

        self._require_generator()
        constraint = None
        if params.json_schema is not None:
            from server.runtime.constrained import JsonConstraint

            constraint = JsonConstraint.for_backend(self, params.json_schema)
        pieces: dict[int, tuple[str, list[int]]] = {}  # token text and bytes, per generation
        seed = params.seed_bits(64)
        generator = torch.Generator().manual_seed(seed if seed is not None else int.from_bytes(os.urandom(4), "little"))
        seen = torch.tensor(prompt_ids, dtype=torch.long)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
            while True:
                # sample_next and the mask edit in place: a copy when the raw row is still needed (logprobs).
                raw = out.logits[0, -1].float()
                logits = raw.clone() if params.logprobs is not None else raw
                if constraint is not None:
                    constraint.apply(logits)
                token = sample_next(logits, params, seen, generator)
                if token in self.eos_ids and (constraint is not None or not params.ignore_eos):
                    return  # under a schema the mask lets EOS through only once the value is complete
                if constraint is not None:
                    constraint.advance(token)
                if params.logprobs is None:
                    yield token
                else:
                    yield token, self._token_logprob(raw, token, params.logprobs, pieces)
                if constraint is not None and constraint.done:
                    return
                seen = torch.cat([seen, torch.tensor([token])])
                out = self.model(
                    input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True
                )

    def _token_logprob(self, raw_logits, token: int, top_n: int,
                       pieces: dict[int, tuple[str, list[int]]]) -> TokenLogprob:
        """The chosen token's log-probability and the top_n most likely tokens', most likely first."""
        import torch

        logprobs = torch.log_softmax(raw_logits, dim=-1)
        top: list[tuple[str, float, list[int]]] = []
        if top_n > 0:
            values, ids = torch.topk(logprobs, min(top_n, logprobs.numel()))
            for value, tid in zip(values.tolist(), ids.tolist(), strict=True):
                text, data = self._piece(tid, pieces)
                top.append((text, float(value), data))
        text, data = self._piece(token, pieces)
        return TokenLogprob(text, float(logprobs[token]), data, top)

    def _piece(self, token: int, cache: dict[int, tuple[str, list[int]]]) -> tuple[str, list[int]]:
        """A token's text (decoded alone, special tokens by name) and its bytes.

        The bytes are the UTF-8 of the text, except for a byte-fallback token (<0xE2>): its one raw
        byte, since alone it is only part of a character (the text is then U+FFFD).
        """
        if token not in cache:
            text = self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            piece = BYTE_PIECE.fullmatch(self.tokenizer.convert_ids_to_tokens(token) or "")
            cache[token] = (text, [int(piece.group(1), 16)] if piece else list(text.encode("utf-8")))
        return cache[token]

    def _require_generator(self) -> None:
        """An encoder (loaded bare, without an LM head) makes vectors: asking it for tokens is refused, not crashed."""
        if self.record.role == "embedding":
            raise FeatureUnsupported(f"{self.record.name} is an embedding model: it makes vectors, not text",
                                     "embed with it (/v1/embeddings, classifiers), or chat with a generation model")

    def logits(self, ids: Sequence[int]):
        import torch

        self._require_generator()
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([list(ids)])).logits[0].float().numpy()

    @property
    def embedding_pooling(self) -> str:
        """The folder's own pooling (its 1_Pooling/config.json), else mean."""
        return self._pooling

    def _embed_ids(self, batch: list[list[int]]):
        """The last hidden states pooled over the attention mask (embedding_pooling), in padded batches.

        Right padding keeps every real token at its own position, so with the mask (causal
        attention never looks ahead to the padding anyway) a padded row computes what it would alone.
        Rows are sorted by length so a batch pads little, and a batch is cut at EMBED_BATCH_TOKENS
        padded tokens to bound the activations.
        """
        import numpy as np
        import torch

        pad = self.tokenizer.pad_token_id
        pad = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))  # masked out: any id will do
        # The base model returns the final-normed last hidden state without computing [tokens, vocab] logits.
        body = getattr(self.model, "base_model", None) or self.model
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        out = None
        start = 0
        with torch.inference_mode():
            while start < len(order):
                end = start + 1
                while end < len(order) and (end - start + 1) * len(batch[order[end]]) <= EMBED_BATCH_TOKENS:
                    end += 1
                rows = order[start:end]
                width = len(batch[rows[-1]])
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, row in enumerate(rows):
                    ids[r, : len(batch[row])] = torch.tensor(batch[row])
                    mask[r, : len(batch[row])] = 1
                hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                pooled = pool(hidden, mask, self._pooling).numpy()
                if out is None:
                    out = np.empty((len(batch), pooled.shape[1]), dtype=np.float32)
                out[rows] = pooled
                start = end
        return out


def sample_next(logits, params: GenerationParams, seen, generator) -> int:
    """One token from logits: repeat penalty, then greedy or temperature / top-k / top-p / min-p."""
    import torch

    if params.repeat_penalty != 1.0 and len(seen):
        prev = torch.unique(seen)
        values = logits[prev]
        logits[prev] = torch.where(values > 0, values / params.repeat_penalty, values * params.repeat_penalty)
    if params.greedy:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
    probs = torch.softmax(logits, dim=-1)
    if params.min_p > 0:
        probs = torch.where(probs < params.min_p * probs.max(), torch.zeros_like(probs), probs)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > params.top_p * cumulative[-1]
        sorted_probs[drop] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
