"""HF folder -> f16/bf16/f32 GGUF (llama.cpp's converter) -> K-quants (llama_model_quantize)."""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agents.quantization.atomic import atomic_output, ensure_disk_space
from agents.quantization.converter import GGUF_OUTTYPES, convert_hf_folder
from agents.quantization.manifest import (
    Manifest,
    RunMeasure,
    WeightFile,
    manifest_path_for,
    measure_run,
    sha256_file,
    tool_versions,
    tree_sha256,
)
from agents.quantization.source import hf_parameter_count, require_hf_folder
from lqmf.errors import OutputExists, QuantizationError
from lqmf.settings import Settings

log = logging.getLogger(__name__)

K_TYPES = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"})
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})


@dataclass(frozen=True)
class GGUFLevel:
    """One llama.cpp quantization type that needs no importance matrix."""

    name: str  # lower-case, as users type it: q4_k_m
    ftype: str  # llama_cpp constant
    nominal_bits: float  # llama.cpp's documented bits per weight, used for estimates only
    main_type: str  # the ggml type most weight matrices get

    @property
    def bits(self) -> int:
        """The bit class users name it by: 4 for q4_k_m."""
        return int(self.name[1])

    @property
    def is_k_quant(self) -> bool:
        return self.main_type in K_TYPES


GGUF_LEVELS: dict[str, GGUFLevel] = {
    level.name: level
    for level in (
        GGUFLevel("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5, "Q8_0"),
        GGUFLevel("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.56, "Q6_K"),
        GGUFLevel("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.67, "Q5_K"),
        GGUFLevel("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", 5.52, "Q5_K"),
        GGUFLevel("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 6.0, "Q5_1"),
        GGUFLevel("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 5.5, "Q5_0"),
        GGUFLevel("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.89, "Q4_K"),
        GGUFLevel("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.58, "Q4_K"),
        GGUFLevel("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 5.0, "Q4_1"),
        GGUFLevel("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5, "Q4_0"),
        GGUFLevel("q3_k_l", "LLAMA_FTYPE_MOSTLY_Q3_K_L", 4.27, "Q3_K"),
        GGUFLevel("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", 3.91, "Q3_K"),
        GGUFLevel("q3_k_s", "LLAMA_FTYPE_MOSTLY_Q3_K_S", 3.5, "Q3_K"),
        GGUFLevel("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", 3.35, "Q2_K"),
    )
}
FLOAT_BITS = {"f32": 32.0, "f16": 16.0, "bf16": 16.0}


@dataclass(frozen=True)
class GGUFTensorReport:
    """What a GGUF file really holds, read with gguf.GGUFReader."""

    histogram: dict[str, int]
    parameter_count: int
    tensor_bytes: int
    matrix_types: dict[str, str]  # name -> type, for tensors with 2+ dimensions

    @property
    def bits_per_weight(self) -> float:
        return self.tensor_bytes * 8 / self.parameter_count if self.parameter_count else 0.0


def read_gguf_tensors(path: Path) -> GGUFTensorReport:
    """Histogram of tensor types, parameter count and tensor bytes of a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    histogram: dict[str, int] = {}
    matrix_types: dict[str, str] = {}
    n_params = n_bytes = 0
    for tensor in reader.tensors:
        type_name = tensor.tensor_type.name
        histogram[type_name] = histogram.get(type_name, 0) + 1
        n_params += int(tensor.n_elements)
        n_bytes += int(tensor.n_bytes)
        if len(tensor.shape) >= 2 and int(min(tensor.shape)) > 1:
            matrix_types[tensor.name] = type_name
    return GGUFTensorReport(dict(sorted(histogram.items())), n_params, n_bytes, matrix_types)


def find_fallbacks(report: GGUFTensorReport, level: GGUFLevel) -> list[dict[str, str]]:
    """Weight matrices llama.cpp stored in another type than the level asks (e.g. rows not /256)."""
    if level.is_k_quant:
        allowed = K_TYPES
    else:
        # Legacy levels keep output.weight at Q6_K by design; anything else is a fallback.
        allowed = frozenset({level.main_type, "Q6_K", "Q8_0"})
    return [
        {"tensor": name, "type": type_name, "expected": level.main_type}
        for name, type_name in sorted(report.matrix_types.items())
        if type_name not in allowed
    ]


def _gguf_manifest(
    final: Path, built: Path, *, method: str, level: str, bits: float, source: dict, measure: RunMeasure, **extra
) -> Manifest:
    report = read_gguf_tensors(built)
    size = built.stat().st_size
    return Manifest(
        name=final.stem,
        format="gguf",
        method=method,
        bits=bits,
        level=level,
        source=source,
        tool_versions=tool_versions("llama-cpp-python", "gguf", "torch", "transformers"),
        size_bytes=size,
        parameter_count=report.parameter_count,
        bits_per_weight=round(report.bits_per_weight, 4),
        weight_files=[WeightFile(final.name, size, sha256_file(built))],
        wall_time_s=round(measure.wall_time_s, 3),
        peak_rss_bytes=measure.peak_rss_bytes,
        tensor_types=report.histogram,
        **extra,
    )


def _write_manifest_beside(final: Path, manifest: Manifest) -> None:
    with atomic_output(manifest_path_for(final), overwrite=True) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")


def convert_to_gguf(
    src: Path, out_file: Path, settings: Settings, outtype: str = "f16", overwrite: bool = False
) -> Manifest:
    """Convert an HF folder to a float GGUF file with llama.cpp's converter; return its manifest."""
    src, out_file = Path(src), Path(out_file)
    require_hf_folder(src)
    if outtype not in GGUF_OUTTYPES:
        raise QuantizationError(f"unknown GGUF outtype {outtype!r}", f"use one of {', '.join(GGUF_OUTTYPES)}")
    n_params = hf_parameter_count(src)
    ensure_disk_space(out_file.parent, int(n_params * FLOAT_BITS[outtype] / 8) + (16 << 20), out_file.name)
    with atomic_output(out_file, overwrite=overwrite) as tmp:
        with measure_run() as measure:
            converter_log = convert_hf_folder(src, tmp, outtype, settings)
        log.debug("converter output for %s:\n%s", src, converter_log)
        manifest = _gguf_manifest(
            out_file, tmp, method="convert", level=outtype, bits=FLOAT_BITS[outtype],
            source={"path": str(src), "format": "hf", "sha256": tree_sha256(src)}, measure=measure,
            details={"converter": "convert_hf_to_gguf.py from the llama-cpp-python sdist"},
        )
        _write_manifest_beside(out_file, manifest)
    log.info("converted %s -> %s (%s, %.2f bpw)", src, out_file, outtype, manifest.bits_per_weight)
    return manifest


def quantize_gguf(
    src_gguf: Path,
    out_file: Path,
    level: str,
    threads: Optional[int] = None,
    overwrite: bool = False,
) -> Manifest:
    """Quantize a float GGUF to `level` (q4_k_m, q8_0, ...) in-process; return the manifest.

    Tensors llama.cpp could not store in the requested type (fallbacks) are listed in the
    manifest's `fallbacks` and `warnings`, and logged as warnings.
    """
    import llama_cpp

    src_gguf, out_file = Path(src_gguf), Path(out_file)
    key = level.lower()
    if key not in GGUF_LEVELS:
        raise QuantizationError(
            f"unknown GGUF level {level!r}", f"choose one of {', '.join(GGUF_LEVELS)}"
        )
    spec = GGUF_LEVELS[key]
    if not src_gguf.is_file():
        raise QuantizationError(f"no GGUF file at {src_gguf}", "convert the HF model to f16 GGUF first")
    if out_file.exists() and not overwrite:
        raise OutputExists(f"{out_file} already exists", "choose another name or pass overwrite=True")
    ensure_disk_space(
        out_file.parent, int(src_gguf.stat().st_size * spec.nominal_bits / 16) + (16 << 20), out_file.name
    )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, spec.ftype)
    params.nthread = threads or os.cpu_count() or 1
    with atomic_output(out_file, overwrite=overwrite) as tmp:
        with measure_run() as measure:
            status = llama_cpp.llama_model_quantize(
                str(src_gguf).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if status != 0 or not tmp.is_file():
            raise QuantizationError(
                f"llama.cpp could not quantize {src_gguf.name} to {key} (status {status})",
                "check that the source is a complete float GGUF (see logs/lqmf.log)",
            )
        report = read_gguf_tensors(tmp)
        fallbacks = find_fallbacks(report, spec)
        warnings = []
        if fallbacks:
            warnings.append(
                f"{len(fallbacks)} weight matrices fell back from {spec.main_type} "
                f"(llama.cpp K-quants need row widths divisible by 256): "
                + ", ".join(f"{f['tensor']}={f['type']}" for f in fallbacks[:8])
                + (" ..." if len(fallbacks) > 8 else "")
            )
            log.warning("%s: %s", out_file.name, warnings[-1])
        manifest = _gguf_manifest(
            out_file, tmp, method="llama.cpp-quantize", level=key, bits=spec.bits,
            source={"path": str(src_gguf), "format": "gguf", "sha256": sha256_file(src_gguf)},
            measure=measure, fallbacks=fallbacks, warnings=warnings,
            details={"main_type": spec.main_type, "nominal_bpw": spec.nominal_bits, "threads": params.nthread},
        )
        _write_manifest_beside(out_file, manifest)
    log.info("quantized %s -> %s (%s, %.2f bpw)", src_gguf, out_file, key, manifest.bits_per_weight)
    return manifest
