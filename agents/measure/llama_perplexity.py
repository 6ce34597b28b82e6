"""llama.cpp's own KL-divergence yardstick: `llama-perplexity --kl-divergence`, on LQMF's fidelity windows.

Two runs, as llama.cpp does it: kld_base() writes the reference's log-probabilities once
(`--kl-divergence-base`), kld_against() scores any variant against them and parses the statistics
llama-perplexity prints. The program is built with the other tools (agents.quantization.llama_tools,
`make tools`) and runs as a tethered child (lqmf.base.processes).

The windows. LQMF's fidelity (agents.measure.fidelity.scoring_chunks) tokenizes the text without BOS and
scores windows of BOS + `chunk - 1` text tokens from the middle on. llama-perplexity tokenizes the whole
file with BOS and cuts it into windows of `chunk` tokens whose first token it *replaces* by BOS: handed
the same text, its window k would start k tokens later than LQMF's (one text token lost per window).
kld_text() therefore hands it the text with one separator character between LQMF's windows, so the
token llama.cpp overwrites is that separator and both score the same tokens at the same positions; it
checks this with the model's own tokenizer. A model without BOS needs no separator: both cut the bare
tokens into windows of `chunk`. What still differs: llama-perplexity stores the reference's
log-probabilities in 16 bits and leaves out tokens whose reference log-probability is below -16, and it
runs several windows per batch (float summation order); where no separator reproduces LQMF's tokens
(KldText.aligned False, said in its note and the log) it gets the plain text and its own layout.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agents.measure.fidelity import scoring_chunks
from lqmf.base.atomic import atomic_output
from lqmf.base.errors import LQMFError, ToolUnavailable
from lqmf.base.processes import exit_words, run_child_captured
from lqmf.base.settings import Settings
from lqmf.base.tools import LlamaTools, tools_folder

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 512
DEFAULT_CHUNKS = 8
# Tried in order between windows; each must tokenize to one token that merges with neither neighbour
# (measured on the demo's SentencePiece vocabulary: "\n" works at every boundary of the held-out text).
SEPARATORS = (b"\n", b"\t", b"\x1e", b"|", b";", b"#", b"@", b"~")
BASE_MAGIC = b"_logits_"
NUMBER = r"([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))"
# llama-perplexity logs these and carries on with garbage, so they end the run here.
COMPLAINTS = {
    "inconsistent vocabulary": "the model and the base were not made with the same vocabulary",
    "does not look like a file containing log-probabilities": "the base file is not a --kl-divergence-base file",
    "failed reading": "the base file is truncated",
    "you need at least": "the text is too short for two windows",
    "failed to decode": "the model failed to decode a window",
    "unable to load model": "the model file could not be loaded",
}


@dataclass(frozen=True)
class Figure:
    """One statistic llama-perplexity prints: the pattern of its line, and how to read its value."""

    label: str  # the line's own words, for the error that says it is missing
    pattern: str
    scale: float = 1.0  # "Same top p" is printed in percent


# The final statistics (perplexity.cpp's kl_divergence()): value and, where printed, its ±.
FIGURES = {
    "ppl_q": Figure("Mean PPL(Q)", rf"^Mean PPL\(Q\)\s*:\s*{NUMBER}\s*±\s*{NUMBER}"),
    "ppl_base": Figure("Mean PPL(base)", rf"^Mean PPL\(base\)\s*:\s*{NUMBER}\s*±\s*{NUMBER}"),
    "ln_ppl_ratio": Figure("Mean ln(PPL(Q)/PPL(base))",
                           rf"^Mean ln\(PPL\(Q\)/PPL\(base\)\)\s*:\s*{NUMBER}\s*±\s*{NUMBER}"),
    "kld_mean": Figure("Mean    KLD", rf"^Mean\s+KLD:\s*{NUMBER}\s*±\s*{NUMBER}"),
    "kld_median": Figure("Median  KLD", rf"^Median\s+KLD:\s*{NUMBER}"),
    "same_top": Figure("Same top p", rf"^Same top p:\s*{NUMBER}\s*±\s*{NUMBER}\s*%", scale=0.01),
}
LAYOUT = re.compile(r"computing over (\d+) chunks, n_ctx=(\d+)")
CHUNK_ROW = re.compile(r"^\s*\d+\s+\d", re.MULTILINE)  # "   8     91.1283 ±  4.9372 ...": one scored chunk
# llama.cpp's logger prints from a thread that is never joined (common_log_main() is leaked on purpose, see its
# log.cpp and ggml-org/llama.cpp#22142), so on a loaded machine the process may exit before its last lines are
# written: a run that scored every chunk yet stops short of the statistics is run again, twice at most.
LOST_TAIL_RETRIES = 2


@dataclass(frozen=True)
class KldText:
    """The text handed to llama-perplexity, laid out so that its windows are LQMF's."""

    data: bytes  # the file's bytes (a window may end inside a character's UTF-8 bytes)
    chunk: int  # tokens per window, BOS included
    windows: int  # windows the text holds (llama-perplexity's base needs two)
    aligned: bool  # every window holds the tokens LQMF's fidelity scores, at the same positions
    separator: Optional[bytes]  # the character between windows (None: the plain text)
    note: str


@dataclass(frozen=True)
class LlamaKld:
    """What `llama-perplexity --kl-divergence` reports for a model against the base's reference."""

    kld_mean: float
    kld_mean_error: float  # its ± as printed (one standard error)
    kld_median: float
    same_top: float  # share of positions where both put the same token first, 0..1
    same_top_error: float
    ppl_q: float
    ppl_q_error: float
    ppl_base: float
    ppl_base_error: float
    ln_ppl_ratio: float  # mean ln(PPL(Q)/PPL(base))
    ln_ppl_ratio_error: float
    chunks: Optional[int]  # windows scored, when llama-perplexity says so
    tokens: Optional[int]  # positions scored: chunks x (chunk - 1 - chunk/2)
    wall_time_s: float
    log_path: Path


def kld_text(model_gguf: Path, text: str, *, chunk: int = DEFAULT_CHUNK, chunks: int = DEFAULT_CHUNKS) -> KldText:
    """`text` laid out for llama-perplexity so that it scores the tokens LQMF's fidelity scores (module docstring)."""
    plain = text.encode("utf-8")
    vocab = _vocabulary(Path(model_gguf))
    try:
        chunk = min(chunk, _context_length(vocab, Path(model_gguf)))
        # As LQMF's fidelity tokenizes (server.runtime.backends.gguf: special tokens parsed, no BOS).
        ids = list(vocab.tokenize(plain, add_bos=False, special=True))
        with_bos = vocab.tokenize(b"", add_bos=True, special=True)
        bos = with_bos[0] if with_bos else None
        windows = scoring_chunks(ids, chunk, bos)
        if len(windows) < 2:
            raise LQMFError(f"the text is {len(ids)} tokens, fewer than llama-perplexity's two windows of {chunk}",
                            "give a longer text")
        count = max(2, min(chunks, len(windows)))
        body = chunk - 1 if bos is not None else chunk

        def layout_of(candidate: bytes) -> bool:
            # As llama-perplexity tokenizes (common_tokenize: BOS where the model has one, no special parsing).
            got = list(vocab.tokenize(candidate, add_bos=True, special=False))
            skip = 1 if bos is not None else 0
            return all(got[k * chunk + skip:(k + 1) * chunk] == ids[k * body:(k + 1) * body] for k in range(count))

        if bos is None:
            if layout_of(plain):
                return KldText(plain, chunk, count, True, None, "no BOS: both cut the same tokens into windows")
        else:
            pieces = [_detokenize(vocab, ids[k * body:(k + 1) * body]) for k in range(count)]
            for separator in SEPARATORS:
                candidate = separator.join(pieces)
                if layout_of(candidate):
                    return KldText(candidate, chunk, count, True, separator,
                                   f"{separator.decode()!r} between windows takes the place llama.cpp gives BOS")
    finally:
        vocab.close()
    note = ("no separator keeps this text's tokens: llama-perplexity gets the plain text, and its window k starts "
            "k tokens later than LQMF's" if bos is not None else
            "llama-perplexity's tokens differ from LQMF's (special-token text?): it gets the plain text")
    log.warning("llama-perplexity's windows are not LQMF's on %s: %s", Path(model_gguf).name, note)
    return KldText(plain, chunk, count, False, None, note)


def kld_base(f16_gguf: Path, text: str, base_file: Path, *, settings: Settings, chunk: int = DEFAULT_CHUNK,
             chunks: int = DEFAULT_CHUNKS, threads: Optional[int] = None) -> Path:
    """Write the reference's log-probabilities over `text` (LQMF's windows) to `base_file`; return it."""
    f16_gguf, base_file = Path(f16_gguf).resolve(), Path(base_file).resolve()
    tools = _tools(settings)
    laid = kld_text(f16_gguf, text, chunk=chunk, chunks=chunks)
    log.info("llama-perplexity base over %d windows of %d tokens (%s)", min(chunks, laid.windows), laid.chunk,
             laid.note)
    log_path = _log_path(settings, f"base-{f16_gguf.stem}")
    with tempfile.TemporaryDirectory(prefix="lqmf-kld-") as work:
        text_file = Path(work) / "kld-text.txt"
        text_file.write_bytes(laid.data)
        with atomic_output(base_file, overwrite=True) as tmp:
            cmd = [str(tools.perplexity), "-m", str(f16_gguf), "-f", str(text_file), "-c", str(laid.chunk),
                   "--chunks", str(min(chunks, laid.windows)), "--kl-divergence-base", str(tmp),
                   "-t", str(_threads(settings, threads))]
            output, _ = _run(cmd, log_path)
            _check_base(tmp, log_path, output)
    return base_file


def kld_against(model_gguf: Path, base_file: Path, *, settings: Settings, threads: Optional[int] = None) -> LlamaKld:
    """Score `model_gguf` against a kld_base() file: llama-perplexity's mean and median KLD, same top p, PPLs."""
    model_gguf, base_file = Path(model_gguf).resolve(), Path(base_file).resolve()
    tools = _tools(settings)
    n_ctx = base_header(base_file)[0]
    log_path = _log_path(settings, model_gguf.stem)
    cmd = [str(tools.perplexity), "-m", str(model_gguf), "--kl-divergence-base", str(base_file), "--kl-divergence",
           "-c", str(n_ctx), "-t", str(_threads(settings, threads))]
    output, wall = _run(cmd, log_path)
    for _ in range(LOST_TAIL_RETRIES):
        if not lost_tail(output):
            break
        log.warning("llama-perplexity scored every chunk but its log stops short of the statistics (%s): running it "
                    "again", log_path)
        output, wall = _run(cmd, log_path)
    return parse_kld_output(output, log_path, wall_time_s=wall)


def lost_tail(output: str) -> bool:
    """Whether a run scored every chunk it announced but its output stops before the last statistic."""
    layout = LAYOUT.search(output)
    if layout is None:
        return False
    scored = len(CHUNK_ROW.findall(output, layout.end()))
    return scored >= int(layout.group(1)) and any(
        re.search(figure.pattern, output, re.MULTILINE | re.IGNORECASE) is None for figure in FIGURES.values())


def parse_kld_output(output: str, log_path: Path, *, wall_time_s: float = 0.0) -> LlamaKld:
    """The final statistics of a `llama-perplexity --kl-divergence` run; LQMFError naming a missing line."""
    values: dict[str, float] = {}
    for key, figure in FIGURES.items():
        found = re.search(figure.pattern, output, re.MULTILINE | re.IGNORECASE)
        if found is None:
            raise LQMFError(f"llama-perplexity printed no '{figure.label}' line (see {log_path})",
                            "it prints its statistics only after 100 scored tokens or more: give a longer text, "
                            "or read the log for the reason it stopped")
        values[key] = float(found.group(1)) * figure.scale
        if found.lastindex and found.lastindex > 1:
            values[f"{key}_error"] = float(found.group(2)) * figure.scale
    layout = LAYOUT.search(output)
    chunks, n_ctx = (int(layout.group(1)), int(layout.group(2))) if layout else (None, None)
    tokens = chunks * (n_ctx - 1 - n_ctx // 2) if chunks is not None and n_ctx is not None else None
    return LlamaKld(**values, chunks=chunks, tokens=tokens, wall_time_s=round(wall_time_s, 3), log_path=log_path)


def base_header(base_file: Path) -> tuple[int, int, int]:
    """(n_ctx, n_vocab, n_chunk) of a --kl-divergence-base file; LQMFError when it is not one."""
    try:
        with open(base_file, "rb") as handle:
            head = handle.read(len(BASE_MAGIC) + 12)
    except OSError as exc:
        raise LQMFError(f"cannot read the KLD base {base_file}: {exc.strerror}", "write it with kld_base()") from exc
    if len(head) < len(BASE_MAGIC) + 12 or not head.startswith(BASE_MAGIC):
        raise LQMFError(f"{base_file} is not a llama-perplexity --kl-divergence-base file",
                        "write it with kld_base()")
    n_ctx, n_vocab, n_chunk = struct.unpack("<Iii", head[len(BASE_MAGIC):])
    return n_ctx, n_vocab, n_chunk


def _check_base(path: Path, log_path: Path, output: str) -> None:
    """The base holds the header, the tokens and every window's log-probabilities (perplexity.cpp's layout)."""
    n_ctx, n_vocab, n_chunk = base_header(path)
    per_token = 2 * ((n_vocab + 1) // 2) + 4  # uint16 log-probs, padded, plus scale and minimum
    expected = len(BASE_MAGIC) + 12 + 4 * n_ctx * n_chunk + 2 * per_token * (n_ctx - 1 - n_ctx // 2) * n_chunk
    if n_chunk < 1 or path.stat().st_size != expected:
        tail = "\n".join(output.strip().splitlines()[-6:])
        raise LQMFError(f"llama-perplexity wrote an incomplete KLD base ({path.stat().st_size:,} of {expected:,} "
                        f"bytes; log: {log_path}):\n{tail}", "read the log for the reason it stopped")


def _run(cmd: list[str], log_path: Path) -> tuple[str, float]:
    """Run llama-perplexity, keep its output in `log_path`; raise on a failed run or a complaint it logs."""
    start = time.perf_counter()
    code, output = run_child_captured(cmd)
    wall = time.perf_counter() - start
    log_path.write_text(f"$ {' '.join(cmd)}\n{output}", encoding="utf-8")
    complaint = next((why for words, why in COMPLAINTS.items() if words in output), None)
    if code != 0 or complaint:
        tail = "\n".join(output.strip().splitlines()[-6:])
        what = complaint or f"llama-perplexity {exit_words(code)}"
        raise LQMFError(f"{what} (log: {log_path}):\n{tail}", "read the log; a base must be made from the same "
                        "model family and text with kld_base()")
    return output, wall


def _tools(settings: Settings) -> LlamaTools:
    tools = LlamaTools.in_folder(tools_folder(settings))
    if not (tools.perplexity.is_file() and os.access(tools.perplexity, os.X_OK)):
        raise ToolUnavailable(f"llama.cpp's llama-perplexity is not built (no {tools.perplexity})",
                              "run `make tools` (about 4 minutes; needs cmake and a C++ compiler)")
    return tools


def _threads(settings: Settings, threads: Optional[int]) -> int:
    return threads or settings.threads or os.cpu_count() or 1


def _log_path(settings: Settings, what: str) -> Path:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    return settings.logs_dir / f"llama-perplexity-{what}.log"


def _vocabulary(model_gguf: Path):
    """The model's tokenizer alone (llama.cpp's vocab-only load): the tokens llama-perplexity will see."""
    import llama_cpp

    from lqmf.base.llama_log import route_llama_log

    if not model_gguf.is_file():
        raise LQMFError(f"no GGUF file at {model_gguf}", "give the path of a .gguf model")
    route_llama_log()  # a vocab-only handle's "n_ctx_train (0)" warning: to the log (lqmf.base.log NOISE)
    return llama_cpp.Llama(str(model_gguf), vocab_only=True, verbose=False)


def _context_length(vocab, model_gguf: Path) -> int:
    """The training context a GGUF records (LQMF's fidelity caps its windows at it)."""
    arch = vocab.metadata.get("general.architecture")
    value = vocab.metadata.get(f"{arch}.context_length")
    if value is None:
        raise LQMFError(f"{model_gguf.name} records no context length", "is it a GGUF model file?")
    return int(value)


def _detokenize(vocab, ids: list[int]) -> bytes:
    """The bytes of `ids`, piece by piece (as LQMF's backend detokenizes: no leading space removed)."""
    return b"".join(vocab.detokenize([token]) for token in ids)
