"""HF folder -> f16/bf16/f32 GGUF (llama.cpp's converter) -> K-quants and IQ types.

Without an importance matrix, llama_model_quantize runs in-process. With one (see
agents.quantization.imatrix), llama.cpp's llama-quantize runs in a child process: the Python
binding cannot pass an imatrix. Some IQ levels cannot be made without one at all.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from agents.quantization.converter import GGUF_OUTTYPES, convert_hf_folder
from agents.quantization.gguf_levels import FLOAT_BITS, GGUF_LEVELS, IQ_TYPES, K_TYPES, GGUFLevel
from lqmf.base.atomic import atomic_output, ensure_disk_space
from lqmf.base.errors import OutputExists, QuantizationError
from lqmf.base.manifest import (
    Manifest,
    RunMeasure,
    WeightFile,
    manifest_path_for,
    measure_run,
    read_manifest,
    sha256_file,
    tool_versions,
    tree_sha256,
)
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings, load_settings
from lqmf.base.source import hf_parameter_count, require_hf_folder

log = logging.getLogger(__name__)

# Called on the finished output while it is still in its hidden temporary (agents.quantization.verify):
# returns facts for the manifest, or raises, and then nothing is renamed into place.
Verifier = Callable[[Path], dict]
# Called as tensors are written, (done, total): the progress of a long conversion or quantization.



@dataclass(frozen=True)
class GGUFTensorReport:
    """What a GGUF file really holds, read with gguf.GGUFReader."""

    histogram: dict[str, int]
    parameter_count: int
    tensor_bytes: int
    matrix_types: dict[str, str]  # name -> type, for tensors with 2+ dimensions
    all_types: dict[str, str] = field(default_factory=dict)  # name -> type, every tensor

    @property
    def bits_per_weight(self) -> float:
        return self.tensor_bytes * 8 / self.parameter_count if self.parameter_count else 0.0


def read_gguf_tensors(path: Path) -> GGUFTensorReport:
    """Histogram of tensor types, parameter count and tensor bytes of a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    histogram: dict[str, int] = {}
    matrix_types: dict[str, str] = {}
    all_types: dict[str, str] = {}
    n_params = n_bytes = 0
    for tensor in reader.tensors:
        type_name = tensor.tensor_type.name
        all_types[tensor.name] = type_name
        histogram[type_name] = histogram.get(type_name, 0) + 1
        n_params += int(tensor.n_elements)
        n_bytes += int(tensor.n_bytes)
        if len(tensor.shape) >= 2 and int(min(tensor.shape)) > 1:
            matrix_types[tensor.name] = type_name
    return GGUFTensorReport(dict(sorted(histogram.items())), n_params, n_bytes, matrix_types, all_types)


def find_fallbacks(report: GGUFTensorReport, level: GGUFLevel, src_gguf: Optional[Path] = None,
                   has_imatrix: bool = False) -> list[dict[str, str]]:
    """Weight matrices llama.cpp stored in another type than it chose for them (e.g. rows not /256).

    With the float GGUF they were quantized from, exactly as llama.cpp counts them: its choice for each tensor
    (agents.quantization.gguf_mix, the level's mix included) against what the file holds. Without it, or if
    that prediction and the file disagree anywhere else, by the level's usual types.
    """
    exact = _predicted_fallbacks(report, level, src_gguf, has_imatrix) if src_gguf is not None else None
    if exact is not None:
        return exact
    if level.is_iq:
        # IQ levels mix IQ and K types by design (attn_v, output, first ffn_down layers).
        allowed = K_TYPES | IQ_TYPES | {level.main_type}
    elif level.is_k_quant:
        allowed = K_TYPES
    else:
        # Legacy levels keep output.weight at Q6_K by design; anything else is a fallback.
        allowed = frozenset({level.main_type, "Q6_K", "Q8_0"})
    return [
        {"tensor": name, "type": type_name, "expected": level.main_type}
        for name, type_name in sorted(report.matrix_types.items())
        if type_name not in allowed
    ]


def _predicted_fallbacks(report: GGUFTensorReport, level: GGUFLevel, src_gguf: Path,
                         has_imatrix: bool) -> Optional[list[dict[str, str]]]:
    from agents.quantization.gguf_mix import fallback_type, float_gguf, predict_mix
    from agents.quantization.shapes import read_shapes

    shapes = read_shapes(src_gguf, "gguf")
    if shapes is None:
        return None
    mix = predict_mix(float_gguf(shapes, src_gguf), shapes, level.name, has_imatrix=has_imatrix)
    real = report.all_types
    if any(real.get(t.name) != t.type for t in mix.tensors):
        log.debug("llama.cpp's types for %s differ from the prediction: fallbacks by the level's usual types",
                  src_gguf.name)
        return None
    return [{"tensor": t.name, "type": t.type, "expected": t.wanted} for t in sorted(mix.tensors, key=lambda t: t.name)
            if t.type != t.wanted and t.type == fallback_type(t.wanted, t.columns)]


def gguf_manifest(
    final: Path, built: Path, *, method: str, level: str, bits: float, source: dict, measure: RunMeasure,
    packages: tuple[str, ...] = ("llama-cpp-python", "gguf", "torch", "transformers"), **extra
) -> Manifest:
    """The manifest of a GGUF file built at `built` that will live at `final` (quantized, downloaded, imported)."""
    report = read_gguf_tensors(built)
    size = built.stat().st_size
    return Manifest(
        name=final.stem,
        format="gguf",
        method=method,
        bits=bits,
        level=level,
        source=source,
        tool_versions=tool_versions(*packages),
        size_bytes=size,
        parameter_count=report.parameter_count,
        bits_per_weight=round(report.bits_per_weight, 4),
        weight_files=[WeightFile(final.name, size, sha256_file(built))],
        wall_time_s=round(measure.wall_time_s, 3),
        peak_rss_bytes=measure.peak_rss_bytes,
        tensor_types=report.histogram,
        **extra,
    )


def write_manifest_beside(final: Path, manifest: Manifest) -> None:
    """Write a file output's manifest next to it (`<file>.lqmf.json`), atomically."""
    with atomic_output(manifest_path_for(final), overwrite=True) as tmp:
        tmp.write_text(manifest.to_json(home=final.parent), encoding="utf-8")


@contextmanager
def file_output(final: Path, overwrite: bool) -> Iterator[Path]:
    """atomic_output for a file whose manifest is written beside it: a failure after that write removes it too."""
    had_manifest = manifest_path_for(final).exists()
    try:
        with atomic_output(final, overwrite=overwrite) as tmp:
            yield tmp
    except BaseException:
        if not had_manifest or not final.exists():
            manifest_path_for(final).unlink(missing_ok=True)
        raise


def convert_to_gguf(
    src: Path, out_file: Path, settings: Settings, outtype: str = "f16", overwrite: bool = False,
    verify: Optional[Verifier] = None, on_tensor: Optional[Progress] = None,
) -> Manifest:
    """Convert an HF folder to a float GGUF file with llama.cpp's converter; return its manifest.

    `verify`, when given, checks the file before it is renamed into place (its facts go in the manifest).
    """
    src, out_file = Path(src), Path(out_file)
    require_hf_folder(src)
    if outtype not in GGUF_OUTTYPES:
        raise QuantizationError(f"unknown GGUF outtype {outtype!r}", f"use one of {', '.join(GGUF_OUTTYPES)}")
    n_params = hf_parameter_count(src)
    ensure_disk_space(out_file.parent, int(n_params * FLOAT_BITS[outtype] / 8) + (16 << 20), out_file.name)
    with file_output(out_file, overwrite) as tmp:
        with measure_run() as measure:
            converter_log = convert_hf_folder(src, tmp, outtype, settings, on_tensor=on_tensor)
        log.debug("converter output for %s:\n%s", src, converter_log)
        details: dict = {"converter": "convert_hf_to_gguf.py from the llama-cpp-python sdist"}
        if verify is not None:
            details["verified"] = verify(tmp)
        manifest = gguf_manifest(
            out_file, tmp, method="convert", level=outtype, bits=FLOAT_BITS[outtype],
            source={"path": str(src), "format": "hf", "sha256": tree_sha256(src)}, measure=measure,
            details=details,
        )
        write_manifest_beside(out_file, manifest)
    log.info("converted %s -> %s (%s, %.2f bpw)", src, out_file, outtype, manifest.bits_per_weight)
    return manifest


def quantize_gguf(
    src_gguf: Path,
    out_file: Path,
    level: str,
    threads: Optional[int] = None,
    overwrite: bool = False,
    imatrix: Optional[Path] = None,
    settings: Optional[Settings] = None,
    source: Optional[dict] = None,
    verify: Optional[Verifier] = None,
    on_tensor: Optional[Progress] = None,
) -> Manifest:
    """Quantize a float GGUF to `level` (q4_k_m, iq4_xs, ...); return the manifest.

    With `imatrix` (a GGUF importance matrix from imatrix.compute_imatrix) llama-quantize runs in
    a child process (built into `settings.tools_dir` on first use) and the manifest's details record
    the imatrix; without one, llama_model_quantize runs in-process. `source` replaces the manifest's
    record of where the weights came from (e.g. the HF folder behind a temporary f16 GGUF).
    Tensors llama.cpp could not store in the requested type (fallbacks) are listed in the
    manifest's `fallbacks` and `warnings`, and logged as warnings. `verify`, when given, checks the
    file before it is renamed into place (its facts go in the manifest's details). `on_tensor(done,
    total)` follows llama.cpp's own per-tensor lines.
    """
    src_gguf, out_file = Path(src_gguf), Path(out_file)
    imatrix = Path(imatrix) if imatrix is not None else None
    spec = _check_quantize_request(src_gguf, out_file, level, imatrix, overwrite)
    ensure_disk_space(
        out_file.parent, int(src_gguf.stat().st_size * spec.nominal_bits / 16) + (16 << 20), out_file.name
    )
    nthreads = threads or os.cpu_count() or 1
    details: dict = {"main_type": spec.main_type, "nominal_bpw": spec.nominal_bits, "threads": nthreads}
    tools = None
    if imatrix is not None:
        from agents.quantization.llama_tools import ensure_llama_tools

        details["imatrix"] = imatrix_details(imatrix)
        tools = ensure_llama_tools(settings or load_settings())  # before timing: a first build takes minutes
    with file_output(out_file, overwrite) as tmp:
        with measure_run() as measure:
            if tools is None:
                with _llama_log_captured(on_tensor) as llama_log:
                    try:
                        details["quantizer"] = _quantize_in_process(src_gguf, tmp, spec, nthreads)
                    finally:
                        log.debug("llama.cpp's quantizer log for %s:\n%s", out_file.name, "".join(llama_log))
            else:
                details["quantizer"] = _quantize_with_tool(tools.quantize, src_gguf, tmp, spec, nthreads, imatrix,
                                                           on_tensor)
        report = read_gguf_tensors(tmp)
        fallbacks = find_fallbacks(report, spec, src_gguf, has_imatrix=imatrix is not None)
        warnings = _quantize_warnings(out_file, spec, fallbacks, imatrix)
        if verify is not None:
            details["verified"] = verify(tmp)
        manifest = gguf_manifest(
            out_file, tmp, method="llama.cpp-quantize", level=spec.name, bits=spec.bits,
            source=source or {"path": str(src_gguf), "format": "gguf", "sha256": sha256_file(src_gguf)},
            measure=measure, fallbacks=fallbacks, warnings=warnings, details=details,
        )
        write_manifest_beside(out_file, manifest)
    log.info("quantized %s -> %s (%s%s, %.2f bpw)", src_gguf, out_file, spec.name,
             " with an importance matrix" if imatrix else "", manifest.bits_per_weight)
    return manifest


def _check_quantize_request(
    src_gguf: Path, out_file: Path, level: str, imatrix: Optional[Path], overwrite: bool
) -> GGUFLevel:
    """The level's spec, once the request is known to be possible; else the error that says why."""
    key = level.lower()
    if key not in GGUF_LEVELS:
        raise QuantizationError(
            f"unknown GGUF level {level!r}", f"choose one of {', '.join(GGUF_LEVELS)}"
        )
    spec = GGUF_LEVELS[key]
    if spec.needs_imatrix and imatrix is None:
        raise QuantizationError(
            f"{key} needs an importance matrix: llama.cpp will not quantize to {spec.main_type} without one",
            "add an importance matrix (compute one from calibration text with "
            "agents.quantization.imatrix.compute_imatrix and pass imatrix=...), or choose iq4_xs or a "
            "K-quant level such as q4_k_m",
        )
    if imatrix is not None and not imatrix.is_file():
        raise QuantizationError(f"no importance matrix at {imatrix}", "compute one with compute_imatrix")
    if not src_gguf.is_file():
        raise QuantizationError(f"no GGUF file at {src_gguf}", "convert the HF model to f16 GGUF first")
    if out_file.exists() and not overwrite:
        raise OutputExists(f"{out_file} already exists", "choose another name or pass overwrite=True")
    return spec


def _quantize_in_process(src_gguf: Path, tmp: Path, spec: GGUFLevel, nthreads: int) -> str:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, spec.ftype)
    params.nthread = nthreads
    status = llama_cpp.llama_model_quantize(str(src_gguf).encode(), str(tmp).encode(), ctypes.byref(params))
    if status != 0 or not tmp.is_file():
        raise QuantizationError(
            f"llama.cpp could not quantize {src_gguf.name} to {spec.name} (status {status})",
            "check that the source is a complete float GGUF (see logs/lqmf.log)",
        )
    return "llama_model_quantize (in-process)"


_LOG_LOCK = threading.Lock()  # llama.cpp has one log callback per process


@contextmanager
def _llama_log_captured(on_tensor: Optional[Progress]) -> Iterator[list[str]]:
    """While in-process quantizing, llama.cpp's log is collected (for the log file), not printed.

    llama.cpp has one log callback per process. llama-cpp-python's own maps ggml's levels by an older enum
    (WARN = 2; this ggml's WARN is 3, which it takes for ERROR), so even at its quietest it prints every
    "falling back" warning: 180 lines on SmolLM2. Here the callback is swapped for the duration: the text is
    collected, its "[ n/ N] tensor" lines go to `on_tensor`, and the fallbacks reach the user once, summed
    up in the manifest's warnings.
    """
    import llama_cpp
    from llama_cpp import _logger

    from agents.quantization.llama_output import TENSOR_PROGRESS

    collected: list[str] = []

    def capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            line = text.decode("utf-8", "replace")
            collected.append(line)
            match = TENSOR_PROGRESS.match(line) if on_tensor is not None else None
            if match:
                on_tensor("tensors", int(match.group(1)), int(match.group(2)))
        except Exception:  # an exception cannot cross back into C: log it, keep quantizing
            log.debug("llama.cpp log callback failed", exc_info=True)

    callback = llama_cpp.llama_log_callback(capture)  # held here: C keeps only a pointer to it
    with _LOG_LOCK:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield collected
        finally:
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _quantize_with_tool(
    quantize: Path, src_gguf: Path, tmp: Path, spec: GGUFLevel, nthreads: int, imatrix: Path,
    on_tensor: Optional[Progress] = None,
) -> str:
    from agents.quantization.llama_output import tensor_lines
    from lqmf.base.processes import exit_words, run_child_lines

    cmd = [str(quantize), "--imatrix", str(imatrix), str(src_gguf), str(tmp), spec.name.upper(), str(nthreads)]
    code, output = run_child_lines(cmd, tensor_lines(on_tensor))
    log.debug("llama-quantize output:\n%s", output)
    if code != 0 or not tmp.is_file():
        tail = "\n".join(output.strip().splitlines()[-8:])
        how = exit_words(code)
        raise QuantizationError(
            f"llama-quantize could not quantize {src_gguf.name} to {spec.name} ({how}):\n{tail}",
            "check that the source is a complete float GGUF and the imatrix was computed on this model",
        )
    return "llama-quantize --imatrix (child process)"


def imatrix_details(imatrix: Path) -> dict:
    """What the manifest records about an importance matrix: file, hash, chunks, calibration text."""
    from agents.quantization.imatrix import read_imatrix

    facts = read_imatrix(imatrix)
    own = (read_manifest(imatrix) or {}).get("details", {})
    return {
        "path": str(Path(imatrix).resolve()),
        "sha256": sha256_file(imatrix),
        "chunks": facts["chunks"],
        "chunk_size": facts["chunk_size"],
        "calibration": own.get("calibration") or ", ".join(facts["datasets"]) or "unknown",
    }


def _quantize_warnings(
    out_file: Path, spec: GGUFLevel, fallbacks: list[dict[str, str]], imatrix: Optional[Path]
) -> list[str]:
    warnings = []
    if fallbacks:
        moves: dict[str, int] = {}
        for f in fallbacks:
            move = f"{f.get('expected', spec.main_type)} -> {f['type']}"
            moves[move] = moves.get(move, 0) + 1
        blocks = sorted({_block_size(f.get("expected", spec.main_type)) for f in fallbacks}, reverse=True)
        warnings.append(
            f"{len(fallbacks)} weight matrices fell back to other types "
            f"({', '.join(f'{n} {move}' for move, n in sorted(moves.items(), key=lambda kv: -kv[1]))}): llama.cpp "
            f"needs row widths divisible by {' or '.join(map(str, blocks))} for the types it chose: "
            + ", ".join(f"{f['tensor']}={f['type']}" for f in fallbacks[:8])
            + (" ..." if len(fallbacks) > 8 else "")
        )
    if spec.is_iq and imatrix is None:
        warnings.append(f"{spec.name} made without an importance matrix: allowed for this level, "
                        "though llama.cpp's IQ types are designed to be used with one")
    for warning in warnings:
        log.warning("%s: %s", out_file.name, warning)
    return warnings


def _block_size(ggml_type: str) -> int:
    from agents.quantization.gguf_mix import GGML_SIZES

    return GGML_SIZES.get(ggml_type, (256, 0))[0]
