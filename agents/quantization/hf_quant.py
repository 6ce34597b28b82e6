"""HF folder -> GPTQ (GPTQModel, CPU) and bitsandbytes (nf4 / fp4 / int8) folders, saved pre-quantized."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable, Optional

from agents.quantization.calibration import load_calibration
from lqmf.atomic import atomic_output, ensure_disk_space
from lqmf.errors import QuantizationError
from lqmf.manifest import (
    Manifest,
    RunMeasure,
    manifest_path_for,
    measure_run,
    safetensors_dtypes,
    tool_versions,
    tree_sha256,
    weight_files,
)
from lqmf.settings import load_settings
from lqmf.source import architecture, hf_parameter_count, hf_weight_bytes, require_hf_folder

log = logging.getLogger(__name__)

BNB_MODES = ("nf4", "fp4", "int8")
GPTQ_BITS = (4, 8)
TOKENIZER_FILES = (
    "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "generation_config.json",
)


def folder_manifest(
    final: Path, built: Path, src: Path, *, fmt: str, method: str, bits: float, level: str,
    measure: RunMeasure, packages: tuple[str, ...], details: Optional[dict] = None,
) -> Manifest:
    """The manifest of a folder output; bits per weight is weight bytes over the source's parameters."""
    files = weight_files(built)
    weight_bytes = sum(f.size_bytes for f in files)
    params = hf_parameter_count(src)
    size = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    return Manifest(
        name=final.name, format=fmt, method=method, bits=bits, level=level,
        source={"path": str(src), "format": "hf", "sha256": tree_sha256(src),
                "architecture": architecture(require_hf_folder(src))},
        tool_versions=tool_versions(*packages),
        size_bytes=size, parameter_count=params,
        bits_per_weight=round(weight_bytes * 8 / params, 4) if params else 0.0,
        weight_files=files, wall_time_s=round(measure.wall_time_s, 3), peak_rss_bytes=measure.peak_rss_bytes,
        tensor_types=safetensors_dtypes(built), details=details or {},
    )


def write_manifest_inside(folder: Path, manifest: Manifest) -> None:
    manifest_path_for(folder).write_text(manifest.to_json(), encoding="utf-8")


def copy_tokenizer_files(src: Path, dest: Path) -> None:
    """Copy tokenizer and generation files the quantizer did not write itself."""
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (dest / name).exists():
            shutil.copy2(src / name, dest / name)


def _quantize_folder(
    src: Path, out_dir: Path, overwrite: bool, estimate_bytes: int,
    build: Callable[[Path], None], describe: Callable[[Path, Path, RunMeasure], Manifest],
    verify: Optional[Callable[[Path], dict]] = None,
) -> Manifest:
    """Shared frame: check source and disk, build in a temporary sibling, verify, write the manifest, rename."""
    src, out_dir = Path(src), Path(out_dir)
    require_hf_folder(src)
    ensure_disk_space(out_dir.parent, estimate_bytes + (16 << 20), out_dir.name)
    with atomic_output(out_dir, overwrite=overwrite, is_dir=True) as tmp:
        with measure_run() as measure:
            build(tmp)
        copy_tokenizer_files(src, tmp)
        if not any(tmp.glob("*.safetensors")):
            raise QuantizationError(f"the quantizer wrote no weights for {out_dir.name}", "see logs/lqmf.log")
        verified = verify(tmp) if verify is not None else None
        manifest = describe(out_dir, tmp, measure)
        if verified is not None:
            manifest.details["verified"] = verified
        write_manifest_inside(tmp, manifest)
    log.info("wrote %s (%s %s, %.2f bpw)", out_dir, manifest.method, manifest.level, manifest.bits_per_weight)
    return manifest


def quantize_bnb(src: Path, out_dir: Path, mode: str = "nf4", overwrite: bool = False,
                 verify: Optional[Callable[[Path], dict]] = None) -> Manifest:
    """Quantize an HF folder with bitsandbytes (nf4, fp4 or int8) on CPU and save it pre-quantized.

    `verify`, when given, checks the folder before it is renamed into place.
    """
    mode = mode.lower()
    if mode not in BNB_MODES:
        raise QuantizationError(f"unknown bitsandbytes mode {mode!r}", f"choose one of {', '.join(BNB_MODES)}")
    src = Path(src)
    bits = 8 if mode == "int8" else 4

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        if bits == 8:
            config = BitsAndBytesConfig(load_in_8bit=True)
        else:
            config = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=torch.float32,
                bnb_4bit_use_double_quant=False,
            )
        model = AutoModelForCausalLM.from_pretrained(src, quantization_config=config, device_map="cpu")
        model.save_pretrained(tmp, safe_serialization=True)

    def describe(final: Path, built: Path, measure: RunMeasure) -> Manifest:
        return folder_manifest(
            final, built, src, fmt="bnb", method="bitsandbytes", bits=bits, level=mode, measure=measure,
            packages=("bitsandbytes", "transformers", "torch"),
        )

    estimate = hf_parameter_count(src) * bits // 8 + hf_weight_bytes(src) // 8
    return _quantize_folder(src, out_dir, overwrite, estimate, build, describe, verify)


def quantize_gptq(
    src: Path,
    out_dir: Path,
    bits: int = 4,
    calibration_file: Optional[Path] = None,
    group_size: int = 128,
    max_samples: int = 64,
    overwrite: bool = False,
    logs_dir: Optional[Path] = None,
    verify: Optional[Callable[[Path], dict]] = None,
) -> Manifest:
    """Quantize an HF folder with GPTQ through GPTQModel on CPU; calibration from a file or the default.

    GPTQModel's per-layer logs go to `logs_dir`/gptqmodel (default: the settings' logs folder).
    `verify`, when given, checks the folder before it is renamed into place.
    """
    if bits not in GPTQ_BITS:
        raise QuantizationError(f"GPTQ supports {GPTQ_BITS} bits here, not {bits}", "use bits=4 or bits=8")
    src = Path(src)
    samples = load_calibration(calibration_file, max_samples)

    def build(tmp: Path) -> None:
        from gptqmodel import GPTQModel, QuantizeConfig
        from gptqmodel.looper import loop_processor

        # GPTQModel writes its per-layer logs to ./logs relative to the working directory;
        # point them at our logs folder so a run never writes into whatever the cwd is.
        loop_processor._PROJECT_LOG_DIR = Path(logs_dir or load_settings().logs_dir) / "gptqmodel"
        config = QuantizeConfig(bits=bits, group_size=group_size, desc_act=False, sym=True)
        model = GPTQModel.load(str(src), config, device="cpu")
        model.quantize(samples, batch_size=1)
        model.save(str(tmp))

    def describe(final: Path, built: Path, measure: RunMeasure) -> Manifest:
        return folder_manifest(
            final, built, src, fmt="gptq", method="gptq", bits=bits, level=f"{bits}bit-g{group_size}",
            measure=measure, packages=("gptqmodel", "transformers", "torch"),
            details={
                "group_size": group_size, "desc_act": False, "sym": True,
                "calibration": str(calibration_file) if calibration_file else "built-in (stdlib docstrings)",
                "calibration_samples": len(samples),
            },
        )

    estimate = hf_parameter_count(src) * bits // 8 + hf_weight_bytes(src) // 4
    return _quantize_folder(src, out_dir, overwrite, estimate, build, describe, verify)
