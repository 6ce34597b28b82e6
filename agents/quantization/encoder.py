"""The factory's rules for sentence-embedding models (encoders): what a plan refuses, and how an output is checked.

An encoder makes one vector per text and cannot decode a token, so its output is verified by its vectors
(agents.quantization.verify.verify_embeddings) against the source's vectors of the same sentences.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from agents.quantization.gguf_levels import GGUF_LEVELS
from lqmf.base.encoders import EMBEDDING, LLAMA_CPP_POOLINGS, is_encoder_model_type, read_layout

if TYPE_CHECKING:
    from agents.quantization.source_facts import SourceFacts
    from agents.quantization.verify import EmbeddingReference

log = logging.getLogger(__name__)

# Sentences the verify step embeds with the source and the output: short and long, prose, code and numbers,
# so that a broken tokenizer, a broken pooling or a broken matrix kernel each shows.
VERIFY_TEXTS = (
    "The cat sat on the warm windowsill and watched the rain.",
    "Quarterly revenue rose 12% while operating costs stayed flat.",
    "def add(a, b):\n    return a + b",
    "How do I reset my password if I no longer have access to my email account?",
)
# The cosine every verify sentence's vector must reach against the source's, by the output's nominal bits.
# Measured on all-MiniLM-L6-v2 (384 wide, 6 layers: small, so among the noisiest), worst of the 4 verify
# sentences / worst of the 60 embedding-fidelity sentences: f16 1.0000/1.0000, q8_0 0.9996/0.9995, int8
# 0.9991/0.9989, q6_k 0.9993/0.9990, q5_k_m 0.9952/0.9937, q4_k_m 0.9910/0.9879, iq4_nl 0.978/0.974,
# nf4 0.971/0.964, q4_0 0.967/0.957, fp4 0.941/0.914, q3_k_m 0.978/0.973, q2_k 0.948/0.945 (MiniLM's
# 384-wide rows make K-quants fall back to q5_0/q8_0, so its q2/q3/q4_k_m are larger and closer than on
# 256-divisible models). Each threshold leaves about twice the worst measured loss of its class as margin
# (4-bit: fp4's); a broken kernel, tokenizer or pooling points vectors elsewhere (cosine near 0 for
# random directions), far below every one of them.
MIN_COSINE_BY_BITS = ((8.0, 0.99), (5.0, 0.98), (4.0, 0.85), (0.0, 0.80))


def min_cosine(bits: float) -> float:
    """The verify threshold for an output of `bits` nominal bits per weight (f16: 16, q8_0/int8: 8, nf4: 4)."""
    return next(threshold for floor, threshold in MIN_COSINE_BY_BITS if bits >= floor)


def encoder_problems(method: str, level: str, facts: "SourceFacts", imatrix: bool = False) -> list[str]:
    """Why a plan cannot quantize this encoder with `method` at `level` (nothing for a generator).

    GPTQModel 7.7 has no BERT-family definition (its MODEL_MAP is decoder-only); llama-imatrix needs
    next-token logits, which an encoder has none of (it aborts), so the levels that need an importance
    matrix cannot be made; and llama.cpp pools only mean, CLS and last-token: its converter refuses max or
    sqrt-length pooling, which the plan can see first.
    """
    if not (is_encoder_model_type(facts.model_type) or _sentence_model(facts)):
        return []
    if method == "gptq" and is_encoder_model_type(facts.model_type):
        return [f"GPTQModel does not quantize BERT encoders ({facts.model_type}); use gguf or bnb"]
    if method == "gguf" and is_encoder_model_type(facts.model_type) and \
            getattr(GGUF_LEVELS.get(level), "needs_imatrix", False):
        return [f"{level} needs an importance matrix, which llama.cpp computes from next-token logits that an "
                f"encoder ({facts.model_type}) does not have; use q2_k or a higher level"]
    if method == "gguf" and imatrix and is_encoder_model_type(facts.model_type):
        return [f"an importance matrix is computed from next-token logits, which an encoder ({facts.model_type}) "
                f"does not have; quantize {facts.name} to {level} without `with imatrix`"]
    layout = read_layout(facts.path) if Path(facts.path).is_dir() else None
    if method == "gguf" and layout is not None and layout.pooling not in LLAMA_CPP_POOLINGS:
        return [f"{facts.name} pools with {layout.pooling!r}, which llama.cpp cannot (it pools mean, cls or last "
                f"token); use bnb"]
    return []


def _sentence_model(facts: "SourceFacts") -> bool:
    return Path(facts.path).is_dir() and read_layout(facts.path) is not None


def embedding_reference(source: Path, source_format: str, source_name: str, bits: float,
                        threads: Optional[int] = None) -> "EmbeddingReference":
    """The source's own vectors of VERIFY_TEXTS (as its runtime pools them) and the threshold for `bits`."""
    from agents.quantization.verify import EmbeddingReference, embeddings_of

    vectors, facts = embeddings_of(source, source_format, source_name, VERIFY_TEXTS, threads)
    log.info("reference embeddings of %s: %d x %d (%s)", source_name, *vectors.shape, facts.get("runtime"))
    return EmbeddingReference(source=source_name, texts=VERIFY_TEXTS, vectors=vectors, min_cosine=min_cosine(bits))


def is_embedding_role(role: Optional[str]) -> bool:
    """True for a model discovery calls an embedding model."""
    return role == EMBEDDING


def is_embedding_source(path: Path) -> bool:
    """True when the model at `path` (an HF folder or a GGUF file) is an embedding model, read from its files."""
    from server.runtime.discovery import inspect_entry

    records = inspect_entry(Path(path))
    return bool(records) and is_embedding_role(records[0].role)
