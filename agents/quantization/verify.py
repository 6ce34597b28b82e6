"""Verify an output before a run is declared done: the runtime that will serve it loads it and decodes one token.

A GGUF is checked by llama.cpp in a tethered child process (gguf_check.py): llama.cpp states why a
load failed only on its log, and a file it cannot read may abort the process outright; a child
turns both into a readable reason without risking the shell. GPTQ and bitsandbytes folders are
loaded in-process through the server's own TransformersBackend (the quantizer already imported
torch and the library, and GPTQModel's CPU kernel is compiled once per machine).

An embedding model (an encoder) cannot decode a token: it is verified by its vectors instead
(verify_embeddings): the same runtimes embed a few sentences, and each vector must point where the
source's does (cosine at least the level's threshold, agents.quantization.encoder.min_cosine).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

if TYPE_CHECKING:  # numpy stays out of the shell's start-up
    import numpy as np

from lqmf.base import gguf_check
from lqmf.base.errors import QuantizationError
from lqmf.base.processes import ChildTimedOut, exit_words, run_child_split
from lqmf.base.sampling import GREEDY

log = logging.getLogger(__name__)

VERIFY_STEP = "verify: load the output and decode one token"
EMBED_VERIFY_STEP = "verify: load the output, embed sentences and compare them with the source's"
GGUF_CHECK = Path(gguf_check.__file__)
GGUF_TIMEOUT_S = 300.0
PROMPT = "def main"
# llama.cpp's log lines that carry a reason (loader errors, asserts); the rest is metadata chatter.
REASON_LINE = re.compile(r"error|failed|GGML_ASSERT|exception|abort|terminate", re.I)
METADATA_LINE = re.compile(r"^(?:llama_model_loader: - |print_info: |load: |llama_context: |llama_kv_cache)")
GENERIC_REASONS = ("failed to load model",)
STAGES = {
    "vocabulary": "reading its vocabulary",
    "weights": "loading its weights",
    "decode": "decoding one token",
    "embed": "embedding a sentence",
    "import llama_cpp": "importing llama-cpp-python",
}


class VerificationFailed(QuantizationError):
    """The output was written but the runtime that should serve it cannot load it or decode with it."""


def verify_output(built: Path, fmt: str, name: str, threads: Optional[int] = None) -> dict:
    """Load `built` (an output still in its temporary) as `fmt`, decode one token; facts, or VerificationFailed."""
    if fmt == "gguf":
        return verify_gguf(built, name, threads)
    return verify_folder(built, fmt, name, threads)


def verify_gguf(path: Path, name: str, threads: Optional[int] = None) -> dict:
    """llama.cpp loads the GGUF (vocabulary, then weights) and decodes one token, in a child process."""
    cmd = [sys.executable, str(GGUF_CHECK), str(path), str(max(1, threads or 1))]
    start = time.perf_counter()
    try:
        # Apart: stdout carries the check's one JSON answer, stderr llama.cpp's log with the reasons.
        code, stdout, stderr = run_child_split(cmd, timeout_s=GGUF_TIMEOUT_S)
    except ChildTimedOut as exc:
        raise VerificationFailed(
            f"llama.cpp did not finish loading {name} within {GGUF_TIMEOUT_S:.0f} s",
            "the file may be damaged; quantize again",
        ) from exc
    log.debug("llama.cpp check of %s (exit %s):\n%s", name, code, stderr)
    result = gguf_check.read_answer(stdout)
    if code == 0 and result.get("ok"):
        facts = {k: result[k] for k in ("n_vocab", "load_s", "token", "piece", "prompt_tokens") if k in result}
        facts.update(runtime="llama.cpp (llama-cpp-python)", wall_s=round(time.perf_counter() - start, 3))
        return facts
    log.error("llama.cpp cannot load %s (exit %s):\n%s", name, code, stderr[-20000:])
    stage = STAGES.get(result.get("stage", ""), "loading it")
    reason = llama_cpp_reason(stderr) or result.get("error") or f"the checking process {exit_words(code)}"
    raise VerificationFailed(
        f"llama.cpp cannot load {name} ({stage}): {reason}",
        "the GGUF was not kept; the source's tokenizer or config may not fit its architecture for llama.cpp "
        "(try gptq or bnb for this model)",
    )


def llama_cpp_reason(stderr: str) -> str:
    """The lines of llama.cpp's log that say why a load failed, without the function-name prefixes."""
    reasons: list[str] = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text or METADATA_LINE.match(text) or not REASON_LINE.search(text):
            continue
        text = re.sub(r"^(?:[a-z_0-9]+:\s+)+", "", text)  # "llama_model_load: error loading model: ..."
        if text and text not in reasons:
            reasons.append(text)
    # The loader repeats the cause up the call chain ("failed to load model"); keep only what says why.
    specific = [r for r in reasons if r not in GENERIC_REASONS]
    return "; ".join((specific or reasons)[:3])


@contextmanager
def _folder_backend(folder: Path, fmt: str, name: str, threads: Optional[int], failure: str,
                    **options) -> Iterator:
    """The server's backend for the folder read back as `fmt` (not yet loaded), unloaded after; any library error
    inside becomes VerificationFailed("the FMT output FAILURE: the library's words")."""
    from server.runtime.backends import backend_for
    from server.runtime.discovery import inspect_folder

    records = inspect_folder(folder)
    if len(records) != 1 or records[0].format != fmt or not records[0].usable:
        seen = ", ".join(f"{r.format}{'' if r.usable else ' (' + r.reason + ')'}" for r in records) or "no model"
        raise VerificationFailed(f"{name} does not read back as a {fmt} model: found {seen}",
                                 "the quantizer wrote an incomplete folder; see the log")
    record = records[0]
    record.name = name  # messages name the output, not its hidden temporary
    backend = backend_for(record, threads=threads, **options)
    try:
        yield backend
    except VerificationFailed:
        raise
    except Exception as exc:
        log.error("%s: %s", name, failure, exc_info=True)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        raise VerificationFailed(f"the {fmt} output {failure}: {message}",
                                 "the folder was not kept; see the log") from exc
    finally:
        backend.unload()


def verify_folder(folder: Path, fmt: str, name: str, threads: Optional[int] = None) -> dict:
    """The server's TransformersBackend loads the folder as `fmt` and decodes one token (greedy)."""
    from lqmf.base.generation import GenerationParams

    start = time.perf_counter()
    with _folder_backend(folder, fmt, name, threads, "cannot be loaded back", n_ctx=64) as backend:
        backend.load()  # ModelLoadError carries the library's reason
        load_s = time.perf_counter() - start
        ids = backend.tokenize(PROMPT)
        if not ids:
            raise VerificationFailed(f"{name}'s tokenizer turns {PROMPT!r} into no tokens", "check the tokenizer files")
        last = backend.logits(ids)[-1]
        bad = int(sum(1 for x in last.tolist() if not math.isfinite(x)))
        if bad:
            raise VerificationFailed(f"{name} decodes to non-finite logits ({bad} NaN or inf values)",
                                     "the quantized weights are broken; try another method or level")
        out = backend.generate(ids, GenerationParams(**GREEDY, max_tokens=1, ignore_eos=True))
        if len(out.token_ids) != 1:
            raise VerificationFailed(f"{name} produced {len(out.token_ids)} tokens where one was asked",
                                     "see the log")
    return {"runtime": f"transformers ({fmt})", "load_s": round(load_s, 3), "token": int(out.token_ids[0]),
            "piece": out.text, "prompt_tokens": len(ids), "wall_s": round(time.perf_counter() - start, 3)}


# -- embedding models -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingReference:
    """What an encoder's output must reproduce: the source's vectors of `texts`, and how close is close enough."""

    source: str  # the source model's name, for messages
    texts: tuple[str, ...]
    vectors: "np.ndarray"  # [len(texts), dim], as the source's runtime pooled them
    min_cosine: float  # the level's threshold (agents.quantization.encoder.min_cosine)


def gguf_embeddings(path: Path, name: str, texts: Sequence[str],
                    threads: Optional[int] = None) -> tuple["np.ndarray", dict]:
    """llama.cpp embeds `texts` with the GGUF (pooled as its metadata says), in a child process; vectors, facts."""
    import numpy as np

    cmd = [sys.executable, str(GGUF_CHECK), "--embed", str(path), str(max(1, threads or 1)), json.dumps(list(texts))]
    start = time.perf_counter()
    try:
        code, stdout, stderr = run_child_split(cmd, timeout_s=GGUF_TIMEOUT_S)
    except ChildTimedOut as exc:
        raise VerificationFailed(f"llama.cpp did not finish embedding with {name} within {GGUF_TIMEOUT_S:.0f} s",
                                 "the file may be damaged; quantize again") from exc
    log.debug("llama.cpp embedding check of %s (exit %s):\n%s", name, code, stderr)
    result = gguf_check.read_answer(stdout)
    if code != 0 or not result.get("ok"):
        log.error("llama.cpp cannot embed with %s (exit %s):\n%s", name, code, stderr[-20000:])
        stage = STAGES.get(result.get("stage", ""), "loading it")
        reason = llama_cpp_reason(stderr) or result.get("error") or f"the checking process {exit_words(code)}"
        raise VerificationFailed(f"llama.cpp cannot embed with {name} ({stage}): {reason}",
                                 "the GGUF was not kept; see the log (bnb keeps the model in transformers)")
    facts = {k: result[k] for k in ("n_vocab", "load_s", "n_embd", "pooling_type", "prompt_tokens") if k in result}
    facts.update(runtime="llama.cpp (llama-cpp-python)", wall_s=round(time.perf_counter() - start, 3))
    return np.asarray(result["vectors"], dtype=np.float32), facts


def folder_embeddings(folder: Path, fmt: str, name: str, texts: Sequence[str],
                      threads: Optional[int] = None) -> tuple["np.ndarray", dict]:
    """The server's TransformersBackend embeds `texts` with the folder (its own pooling); vectors, facts."""
    start = time.perf_counter()
    with _folder_backend(folder, fmt, name, threads, f"{name} cannot embed") as backend:
        backend.load()
        load_s = time.perf_counter() - start
        batch = backend.embed_batch(list(texts), normalize=False, truncate=True)
    return batch.vectors, {"runtime": f"transformers ({fmt})", "load_s": round(load_s, 3),
                           "pooling": batch.pooling, "prompt_tokens": batch.token_counts[0] if texts else 0,
                           "wall_s": round(time.perf_counter() - start, 3)}


# How each format's output is embedded: llama.cpp in a child for a GGUF, transformers for a folder.
EMBEDDERS: dict[str, Callable[..., tuple["np.ndarray", dict]]] = {
    "gguf": lambda path, fmt, name, texts, threads: gguf_embeddings(path, name, texts, threads),
    "hf": folder_embeddings, "bnb": folder_embeddings, "gptq": folder_embeddings,
}


def embeddings_of(path: Path, fmt: str, name: str, texts: Sequence[str],
                  threads: Optional[int] = None) -> tuple["np.ndarray", dict]:
    """The vectors of `texts` as the runtime that serves `fmt` makes them, and the facts of that run."""
    if fmt not in EMBEDDERS:
        raise VerificationFailed(f"LQMF cannot embed with a {fmt} model", "use a gguf, hf or bnb model")
    return EMBEDDERS[fmt](Path(path), fmt, name, list(texts), threads)


def cosines(a: "np.ndarray", b: "np.ndarray") -> "np.ndarray":
    """Row-wise cosine similarity of two [n, dim] arrays (0 for a zero row)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)


def verify_embeddings(built: Path, fmt: str, name: str, reference: EmbeddingReference,
                      threads: Optional[int] = None) -> dict:
    """The output embeds the reference's texts as the source does (cosine >= the threshold on every one)."""
    vectors, facts = embeddings_of(built, fmt, name, reference.texts, threads)
    if vectors.shape != reference.vectors.shape:
        raise VerificationFailed(
            f"{name} makes {vectors.shape[-1]}-dimensional vectors, {reference.source} "
            f"{reference.vectors.shape[-1]}-dimensional ones", "the output is not the same model; see the log")
    sims = cosines(reference.vectors, vectors)
    worst = int(sims.argmin())
    if not sims[worst] >= reference.min_cosine:  # a NaN fails too
        raise VerificationFailed(
            f"{name}'s embedding of {reference.texts[worst]!r} is too far from {reference.source}'s: cosine "
            f"{sims[worst]:.4f}, below the {reference.min_cosine:g} this level must reach",
            "the quantized weights lose too much; try a higher level (q8_0, int8)")
    facts.update(check="embedding", texts=len(reference.texts), min_cosine=round(float(sims.min()), 6),
                 mean_cosine=round(float(sims.mean()), 6), threshold=reference.min_cosine)
    return facts
