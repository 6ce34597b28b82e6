"""HF folder -> GPTQ (GPTQModel, CPU) and bitsandbytes (nf4 / fp4 / int8) folders, saved pre-quantized."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

from agents.quantization.calibration import load_calibration
from lqmf.base.atomic import atomic_output, ensure_disk_space
from lqmf.base.encoders import EMBEDDING, GENERATION, MODULES_FILE, hf_role
from lqmf.base.errors import QuantizationError
from lqmf.base.log import LOAD_OUTPUT, noise_filtered, route_library_loggers
from lqmf.base.manifest import (
    Manifest,
    RunMeasure,
    manifest_path_for,
    measure_run,
    safetensors_dtypes,
    tool_versions,
    tree_sha256,
    weight_files,
)
from lqmf.base.progress import Progress
from lqmf.base.quiet import library_output_logged, library_output_to
from lqmf.base.settings import load_settings
from lqmf.base.source import architecture, hf_parameter_count, hf_weight_bytes, require_hf_folder

log = logging.getLogger(__name__)

BNB_MODES = ("nf4", "fp4", "int8")
BNB_AUTO_CLASS = {EMBEDDING: "AutoModel", GENERATION: "AutoModelForCausalLM"}  # by lqmf.base.encoders.hf_role
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
    manifest_path_for(folder).write_text(manifest.to_json(home=folder.parent), encoding="utf-8")


def copy_tokenizer_files(src: Path, dest: Path) -> None:
    """Copy tokenizer and generation files the quantizer did not write itself."""
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (dest / name).exists():
            shutil.copy2(src / name, dest / name)


def copy_sentence_layout(src: Path, dest: Path) -> None:
    """Copy a sentence-transformers model's pipeline files (modules.json, its configs, 1_Pooling/, 2_Dense/ ...)
    that save_pretrained does not write, so the output pools and normalises as the source does."""
    from agents.quantization.acquire.selection import pick_hf_files
    from lqmf.base.encoders import read_layout

    layout = read_layout(src)
    if layout is None:
        return
    files = (p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    for rel in pick_hf_files(files, layout.folders):
        if "/" not in rel and rel.endswith((".safetensors", ".index.json")):
            continue  # the quantized weights (and their index) are the quantizer's
        target = dest / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)


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

    # An encoder is quantized bare (AutoModel), as sentence-transformers and the server load it: a causal-LM
    # head on BERT would be random, and bitsandbytes cannot initialise one (int8 'Parameter' has no 'CB').
    role = hf_role(require_hf_folder(src), (src / MODULES_FILE).is_file())

    def build(tmp: Path) -> None:
        import torch
        import transformers
        from transformers import BitsAndBytesConfig

        if bits == 8:
            config = BitsAndBytesConfig(load_in_8bit=True)
        else:
            config = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=torch.float32,
                bnb_4bit_use_double_quant=False,
            )
        route_library_loggers()
        auto = getattr(transformers, BNB_AUTO_CLASS[role])
        # transformers' "Loading weights" bar and the libraries' prints: to the log (lqmf.log's NOISE)
        with library_output_logged(noise_filtered(LOAD_OUTPUT), logging.INFO):
            model = auto.from_pretrained(src, quantization_config=config, device_map="cpu")
        model.save_pretrained(tmp, safe_serialization=True)
        if role == EMBEDDING:
            copy_sentence_layout(src, tmp)

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
    on_progress: Optional[Progress] = None,
) -> Manifest:
    """Quantize an HF folder with GPTQ through GPTQModel on CPU; calibration from a file or the default.

    GPTQModel's per-layer logs go to `logs_dir`/gptqmodel (default: the settings' logs folder), and so does
    everything it prints (banners, INFO lines, progress bars: `logs_dir`/gptqmodel/<output>.log), while it
    quantizes and while `verify` loads the output; `on_progress("layers", done, total)` follows its layers.
    `verify`, when given, checks the folder before it is renamed into place.
    """
    if bits not in GPTQ_BITS:
        raise QuantizationError(f"GPTQ supports {GPTQ_BITS} bits here, not {bits}", "use bits=4 or bits=8")
    src = Path(src)
    samples = load_calibration(calibration_file, max_samples)
    gptq_logs = Path(logs_dir or load_settings().logs_dir) / "gptqmodel"
    output_log = gptq_logs / f"{Path(out_dir).name}.log"

    def quiet(title: str):
        return library_output_to(output_log, _layer_progress(on_progress), title=f"{title} {Path(out_dir).name}")

    def build(tmp: Path) -> None:
        with quiet("quantize"):
            from gptqmodel import GPTQModel, QuantizeConfig
            from gptqmodel.looper import loop_processor

            route_library_loggers()  # a handler transformers bound to the terminal before this context

            # GPTQModel writes its per-layer logs to ./logs relative to the working directory;
            # point them at our logs folder so a run never writes into whatever the cwd is.
            loop_processor._PROJECT_LOG_DIR = gptq_logs
            config = QuantizeConfig(bits=bits, group_size=group_size, desc_act=False, sym=True)
            model = GPTQModel.load(str(src), config, device="cpu")
            model.quantize(samples, batch_size=1)
            model.save(str(tmp))
        log.info("GPTQModel's output for %s is in %s", Path(out_dir).name, output_log)

    def quiet_verify(built: Path) -> dict:
        with quiet("verify"):
            return verify(built)

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
    return _quantize_folder(src, out_dir, overwrite, estimate, build, describe,
                            quiet_verify if verify is not None else None)


# GPTQModel's layer loop, as LogBar draws it: "Quantizing layer 3 of 29 [3 of 29] ...", with the last index.
LAYER_LINE = re.compile(r"Quantizing layer (\d+) of (\d+)")


def _layer_progress(on_progress: Optional[Progress]) -> Optional[Callable[[str], None]]:
    """A line reader that reports GPTQModel's layer loop to `on_progress` once per layer."""
    if on_progress is None:
        return None
    last = [-1]

    def on_line(line: str) -> None:
        found = LAYER_LINE.findall(line)
        if found:
            done, last_index = (int(x) for x in found[-1])
            if done != last[0]:
                last[0] = done
                on_progress("layers", done, last_index + 1)

    return on_line
