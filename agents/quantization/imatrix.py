"""Importance matrices: llama.cpp's llama-imatrix over calibration text, with a manifest beside the result.

The matrix weighs each weight's rounding by how strongly calibration text activates it; llama-quantize
reads it (gguf_quant.quantize_gguf(imatrix=...)), and some IQ levels cannot be made without one. The
program is built by agents.quantization.llama_tools and runs as a tethered child (lqmf.base.processes).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agents.quantization.llama_tools import ensure_llama_tools
from lqmf.base.atomic import atomic_output, temp_sibling
from lqmf.base.errors import OutputExists, QuantizationError
from lqmf.base.processes import exit_words, run_child_captured
from lqmf.base.settings import Settings
from lqmf.base.tools import LlamaTools

log = logging.getLogger(__name__)

CALIBRATION_FILE = "lqmf-calibration.txt"  # the name llama-imatrix records as the imatrix's dataset
DEFAULT_CHUNK = 512  # llama-imatrix's own default context per chunk
MIN_CHUNK = 64  # below this a chunk holds too little context to be representative


@dataclass(frozen=True)
class ImatrixReport:
    """What one llama-imatrix run produced."""

    path: Path
    sha256: str
    chunks: int  # chunks of `chunk_size` tokens the activations were collected over
    chunk_size: int
    tokens: int  # tokens evaluated: chunks x chunk_size
    samples: int
    calibration: str  # where the text came from, in words
    perplexity: Optional[float]  # the f16 model's perplexity on the calibration text, as llama-imatrix reports
    wall_time_s: float


def gguf_context_length(model_gguf: Path) -> int:
    """The training context (`<arch>.context_length`) stored in a GGUF model."""
    from gguf import GGUFReader

    reader = GGUFReader(str(model_gguf))
    arch = reader.fields.get("general.architecture")
    field = reader.fields.get(f"{arch.contents()}.context_length") if arch is not None else None
    if field is None:
        raise QuantizationError(f"{model_gguf.name} records no context length", "is it a GGUF model file?")
    return int(field.contents())


def compute_imatrix(
    model_gguf: Path,
    samples: list[str],
    out_file: Path,
    settings: Settings,
    threads: Optional[int] = None,
    ctx: Optional[int] = None,
    calibration: Optional[str] = None,
    overwrite: bool = False,
) -> ImatrixReport:
    """Run llama-imatrix over `samples` with `model_gguf` (a float GGUF); write `out_file`, a GGUF imatrix.

    Chunks are `ctx` tokens (default: 512, or the model's training context when smaller; a short text
    gets shorter chunks); llama-imatrix needs at least two chunks of text. `calibration` describes the
    text for the records. The output and its manifest (`<out_file>.lqmf.json`, which quantize_gguf reads)
    appear only when complete; Ctrl-C ends the child and leaves neither output nor temporary behind.
    """
    from lqmf.base.manifest import measure_run

    model_gguf, out_file = Path(model_gguf).resolve(), Path(out_file).resolve()
    if not model_gguf.is_file():
        raise QuantizationError(f"no GGUF file at {model_gguf}", "convert the model to an f16 GGUF first")
    if not any(s.strip() for s in samples):
        raise QuantizationError("no calibration text for the importance matrix", "give a calibration file")
    if out_file.exists() and not overwrite:
        raise OutputExists(f"{out_file} already exists", "choose another name or pass overwrite=True")
    chunk = min(ctx or DEFAULT_CHUNK, gguf_context_length(model_gguf))
    calibration = calibration or f"{len(samples)} calibration samples"
    tools = ensure_llama_tools(settings)
    nthreads = threads or settings.threads or os.cpu_count() or 1
    # A temp sibling folder, not /tmp: sweep_stale_temps removes it if this process is killed.
    workdir = temp_sibling(out_file.with_name(out_file.name + ".calibration"))
    text = "\n\n".join(samples)
    # Decided here from our own token count: llama-imatrix's "too short" message is written by an
    # asynchronous logger and is sometimes lost when it exits at once.
    chunk = _chunk_for(count_tokens(model_gguf, text), chunk, allow_smaller=ctx is None, chars=len(text))
    try:
        workdir.mkdir(parents=True)
        (workdir / CALIBRATION_FILE).write_text(text, encoding="utf-8")
        with atomic_output(out_file, overwrite=overwrite) as tmp:
            with measure_run() as measure:
                output = _run_imatrix(tools, model_gguf, workdir, tmp, chunk, nthreads)
            report = _imatrix_report(out_file, tmp, output, samples, calibration, measure.wall_time_s)
            _write_imatrix_manifest(out_file, tmp, model_gguf, report, measure, nthreads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("importance matrix %s: %d chunks of %d tokens from %s", out_file, report.chunks, report.chunk_size,
             calibration)
    return report


def count_tokens(model_gguf: Path, text: str) -> int:
    """Tokens of `text` as llama-imatrix counts them (the model's own vocabulary, with BOS)."""
    import llama_cpp

    from lqmf.base.llama_log import route_llama_log

    route_llama_log()  # a vocab-only handle's "n_ctx_train (0)" warning: to the log (lqmf.base.log NOISE)
    vocab = llama_cpp.Llama(str(model_gguf), vocab_only=True, verbose=False)
    try:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    finally:
        vocab.close()


def _chunk_for(tokens: int, chunk: int, allow_smaller: bool, chars: int) -> int:
    """The chunk size a text of `tokens` fills twice (llama-imatrix's minimum), or the error that says how much more."""
    if tokens >= 2 * chunk:
        return chunk
    if allow_smaller and tokens // 2 >= MIN_CHUNK:
        log.info("the calibration text is %d tokens: chunks of %d instead of %d", tokens, tokens // 2, chunk)
        return tokens // 2
    needed = 2 * (min(chunk, MIN_CHUNK) if allow_smaller else chunk)
    raise QuantizationError(
        f"the calibration text is only {tokens} tokens; llama-imatrix needs at least {needed} "
        f"(two chunks of {needed // 2} tokens)",
        f"give a longer calibration text: about {int((needed - tokens) * chars / max(tokens, 1)) + 1} "
        "more characters",
    )


def _run_imatrix(tools: LlamaTools, model: Path, workdir: Path, out: Path, chunk: int, threads: int) -> str:
    """Run llama-imatrix into `out` with chunks of `chunk` tokens."""
    cmd = [
        str(tools.imatrix), "-m", str(model), "-f", CALIBRATION_FILE, "-o", str(out), "--output-format", "gguf",
        "-c", str(chunk), "-b", str(chunk), "-t", str(threads),
    ]
    code, output = run_child_captured(cmd, cwd=workdir)
    log.debug("llama-imatrix output:\n%s", output)
    if code != 0 or not out.is_file():
        tail = "\n".join(output.strip().splitlines()[-8:])
        how = exit_words(code)
        raise QuantizationError(f"llama-imatrix {how}:\n{tail}", "see logs/lqmf.log for the full output")
    return output


def _imatrix_report(final: Path, built: Path, output: str, samples: list[str], calibration: str,
                    wall_time_s: float) -> ImatrixReport:
    from lqmf.base.manifest import sha256_file

    facts = read_imatrix(built)
    perplexity = re.search(r"Final estimate: PPL = ([0-9.]+)", output)
    return ImatrixReport(
        path=final, sha256=sha256_file(built), chunks=facts["chunks"], chunk_size=facts["chunk_size"],
        tokens=facts["chunks"] * facts["chunk_size"], samples=len(samples), calibration=calibration,
        perplexity=float(perplexity.group(1)) if perplexity else None, wall_time_s=round(wall_time_s, 3),
    )


def _write_imatrix_manifest(final: Path, built: Path, model: Path, report: ImatrixReport, measure,
                            threads: int) -> None:
    """The imatrix's own manifest, beside it: what quantize_gguf copies into the quantized model's record."""
    from lqmf.base.manifest import Manifest, WeightFile, manifest_path_for, sha256_file, tool_versions

    facts = read_imatrix(built)
    manifest = Manifest(
        name=final.name, format="imatrix", method="llama-imatrix", bits=32.0, level="imatrix",
        source={"path": str(model), "format": "gguf", "sha256": sha256_file(model)},
        tool_versions=tool_versions("llama-cpp-python", "gguf"), size_bytes=built.stat().st_size,
        parameter_count=facts["values"], bits_per_weight=32.0,
        weight_files=[WeightFile(final.name, built.stat().st_size, report.sha256)],
        wall_time_s=round(measure.wall_time_s, 3), peak_rss_bytes=measure.peak_rss_bytes,
        details={"calibration": report.calibration, "samples": report.samples, "chunks": report.chunks,
                 "chunk_size": report.chunk_size, "tokens": report.tokens, "perplexity": report.perplexity,
                 "threads": threads},
    )
    with atomic_output(manifest_path_for(final), overwrite=True) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")


def read_imatrix(path: Path) -> dict:
    """What a GGUF imatrix file says about itself: chunks, chunk size, datasets, number of values."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    kind = reader.fields.get("general.type")
    if kind is None or kind.contents() != "imatrix":
        raise QuantizationError(f"{Path(path).name} is not a GGUF importance matrix",
                                "compute one with llama-imatrix (compute_imatrix)")

    def value(key: str, default):
        field = reader.fields.get(key)
        return field.contents() if field is not None else default

    return {
        "chunks": int(value("imatrix.chunk_count", 0)),
        "chunk_size": int(value("imatrix.chunk_size", 0)),
        "datasets": list(value("imatrix.datasets", [])),
        "values": sum(int(t.n_elements) for t in reader.tensors),
    }
