"""A quantization plan: what will run, what it should produce and cost, and why it cannot run when it cannot.

Everything here is read from files (config.json, safetensors headers, GGUF metadata, earlier runs
in the history) and the machine (free memory and disk); nothing heavy is imported and nothing runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from agents.quantization.budget.target import Budget
from agents.quantization.encoder import encoder_problems
from agents.quantization.gguf_levels import FLOAT_BITS, GGUF_LEVELS
from agents.quantization.hf_quant import BNB_MODES, GPTQ_BITS
from agents.quantization.shape_plan import DEFAULT_GROUP_SIZE, ShapeVerdict, shape_verdict
from agents.quantization.source_facts import SourceFacts, source_facts  # noqa: F401 (source_facts: re-exported)
from lqmf.base.manifest import process_rss
from lqmf.base.source import DTYPE_BYTES, safetensors_headers

MIB = 2**20
GIB = 2**30
METHODS = ("gguf", "gptq", "bnb")
# The level each method uses for "N-bit" (llama.cpp's own recommendation for 4 bits is Q4_K_M).
LEVEL_FOR_BITS = {
    "gguf": {2: "q2_k", 3: "q3_k_m", 4: "q4_k_m", 5: "q5_k_m", 6: "q6_k", 8: "q8_0", 16: "f16", 32: "f32"},
    "bnb": {4: "nf4", 8: "int8"},
    "gptq": {4: "4bit", 8: "8bit"},
}
WHY_LEVEL = {
    "q4_k_m": "llama.cpp's recommended 4-bit mix: about a third of f16's size at a small quality cost",
    "q8_0": "near-lossless 8-bit: half of f16's size, the safest level when quality matters most",
    "q5_k_m": "5-bit mix: a little larger than q4_k_m, measurably closer to the original",
    "q6_k": "6-bit: very close to f16 at about 40% of its size",
    "q3_k_m": "3-bit mix: small, with a clear quality cost — check its fidelity",
    "q2_k": "2-bit: the smallest K-quant, with a large quality cost — check its fidelity",
    "nf4": "bitsandbytes NF4: 4-bit normal-float weights, loaded by transformers without conversion",
    "int8": "bitsandbytes LLM.int8: 8-bit weights, close to the original, loaded by transformers",
    "fp4": "bitsandbytes FP4: 4-bit float weights (NF4 is usually more faithful)",
    "4bit": "GPTQ 4-bit: each layer's rounding corrected against calibration text; GPTQModel serves it on CPU",
    "8bit": "GPTQ 8-bit: close to the original, calibrated layer by layer; GPTQModel serves it on CPU",
}
# Rough costs for a first run of a method on this kind of machine (no earlier run to scale from):
# fixed start-up seconds, seconds per billion parameters, and RAM as fixed + bytes per parameter.
# The RAM is what the run adds to the process that runs it (children included): the plan adds the
# process's own size at planning time. A peak is measured over the whole process, so a shell already
# holding torch and a loaded model (1.0 GiB planned, 1.8 GiB measured for demo-hf -> q5_k_m) peaks
# that much higher than a bare one; a fixed total could not be right for both.
DEFAULT_COST = {
    # gguf from HF: the converter child (python, torch, safetensors), llama.cpp loaded in process and the
    # verifying llama.cpp child; measured 0.76 GiB over a bare 0.04 GiB process on the demo model.
    "gguf": (10.0, 120.0, 800 * MIB, 2.0),
    # Not yet measured this way: the former whole-process figures, kept as the (generous) run's own share.
    "bnb": (15.0, 90.0, 1280 * MIB, 4.0),
    "gptq": (60.0, 7200.0, 1792 * MIB, 5.0),
}
IMATRIX_S_PER_B = 300.0  # evaluating ~4k calibration tokens per billion parameters on 2 cores
MARGIN = 1.15  # plans need this much headroom over the estimate


@dataclass
class QuantRequest:
    """What the person asked for: source model, and optionally method, bits, level, name and extras."""

    model: str
    method: Optional[str] = None
    bits: Optional[int] = None
    level: Optional[str] = None
    name: Optional[str] = None
    calibration_file: Optional[Path] = None
    imatrix: bool = False
    fidelity: bool = False
    overwrite: bool = False
    group_size: Optional[int] = None  # GPTQ: weights per scale and zero (default 128)
    budget: Optional[Budget] = None  # a size, RAM or KLD target: a measured per-tensor mix (agents.quantization.budget)


@dataclass
class Machine:
    """What this machine can give a run right now."""

    available_ram: int
    free_disk: int
    cpus: int
    process_rss: int = 0  # this process and its children now: the base a run's own memory adds to


@dataclass
class QuantPlan:
    """Everything a run will do, shown before it starts; `problems` non-empty means refused."""

    source: str
    source_path: str
    source_format: str
    method: str
    level: str
    bits: float
    output_name: str
    output_path: str
    parameter_count: int
    steps: list[str]
    calibration: Optional[str]
    imatrix: bool
    fidelity: bool
    expected_size_bytes: int
    expected_peak_ram_bytes: int
    disk_needed_bytes: int
    available_ram_bytes: int
    free_disk_bytes: int
    estimated_seconds: float
    estimate_basis: str
    recommendation: str
    overwrite: bool = False
    calibration_file: Optional[str] = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline_rss_bytes: int = 0  # the planning process's size (children included) the RAM estimate starts from
    ram_basis: str = ""  # how the RAM estimate was made: the default formula or an earlier run's measured peak
    group_size: Optional[int] = None  # GPTQ only
    # From the source's tensor shapes (agents.quantization.shape_plan): the output's weight bytes over its
    # parameters, as the manifest will measure it (0: no shapes read), and its tensor types (GGUF).
    expected_bits_per_weight: float = 0.0
    tensor_types: dict[str, int] = field(default_factory=dict)
    alternative: Optional[str] = None  # what to change in the request for a plan that works or is smaller
    budget: Optional[dict] = None  # a budget search's target (Budget.to_dict()); method "budget"

    @property
    def runnable(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_now(folder: Path) -> Machine:
    """Available RAM, free disk under `folder` (or its nearest existing parent), and CPU count."""
    import psutil

    probe = Path(folder)
    while not probe.exists():
        probe = probe.parent
    return Machine(psutil.virtual_memory().available, shutil.disk_usage(probe).free, os.cpu_count() or 1,
                   process_rss())


@lru_cache(maxsize=4)
def converter_architectures(converter_dir: Path) -> frozenset[str]:
    """Architectures llama.cpp's converter registers (read from its source, not imported)."""
    names: set[str] = set()
    for file in [converter_dir / "convert_hf_to_gguf.py", *sorted((converter_dir / "conversion").glob("*.py"))]:
        if file.is_file():
            for args in re.findall(r"\.register\(([^)]*)\)", file.read_text(encoding="utf-8"), re.S):
                names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", args))
    return frozenset(names)


@lru_cache(maxsize=1)
def gptq_model_types() -> frozenset[str]:
    """model_type values GPTQModel knows (its MODEL_MAP keys, read from source so planning stays fast)."""
    spec = importlib.util.find_spec("gptqmodel")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    auto = Path(list(spec.submodule_search_locations)[0]) / "models" / "auto.py"
    if not auto.is_file():
        return frozenset()
    text = auto.read_text(encoding="utf-8")
    block = text[text.find("MODEL_MAP = {"):]
    block = block[: block.find("}") + 1]
    return frozenset(re.findall(r"[\"']([A-Za-z0-9_.\-]+)[\"']\s*:", block))


KEPT_WIDE = re.compile(r"embed|lm_head|wte|wpe", re.I)  # transformers quantizers leave these unquantized


def expected_output_bytes(facts: SourceFacts, method: str, bits: float) -> int:
    """Output size from the source's tensor shapes: matrices at `bits`, what each method keeps wide at its width."""
    if method == "bnb" and bits == 4:
        bits += 0.5  # one 32-bit absmax per 64-weight block
    elif method == "gptq":
        bits += 0.25  # fp16 scale and packed zero per 128-weight group
    if facts.format != "hf" or not facts.path.is_dir():
        return int(facts.parameter_count * bits / 8) + 256 * 1024
    total = 0.0
    for header in safetensors_headers(facts.path):
        for name, info in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in info["shape"]:
                n *= dim
            if len(info["shape"]) < 2:
                total += n * (4 if method == "gguf" else DTYPE_BYTES.get(info["dtype"], 4))  # norms, biases
            elif method != "gguf" and KEPT_WIDE.search(name):
                # GPTQModel saves what it leaves unquantized in fp16; bitsandbytes keeps the source dtype.
                width = DTYPE_BYTES.get(info["dtype"], 4)
                total += n * (min(width, 2) if method == "gptq" else width)
            else:
                total += n * bits / 8
    return int(total) + 256 * 1024  # config, tokenizer and manifest files


def default_output_name(source: str, method: str, level: str, group_size: Optional[int] = None) -> str:
    """demo-hf + gguf q4_k_m -> demo-q4_k_m.gguf; + bnb nf4 -> demo-bnb-nf4; + gptq 4bit -> demo-gptq-4bit
    (+ group size 64 -> demo-gptq-4bit-g64: the default 128 is not named)."""
    stem = re.sub(r"[-_](hf|f16|f32|bf16)$", "", source, flags=re.I) or source
    if method == "gguf":
        return f"{stem}-{level}.gguf"
    suffix = f"-g{group_size}" if method == "gptq" and group_size and group_size != DEFAULT_GROUP_SIZE else ""
    return f"{stem}-{method}-{level}{suffix}"


def choose_method_and_level(request: QuantRequest) -> tuple[str, str, list[str]]:
    """The method and level a request means; problems when it names something that does not exist."""
    problems: list[str] = []
    level = request.level.lower() if request.level else None
    method = request.method
    if method is None:
        if level in BNB_MODES:
            method = "bnb"
        elif level and level.endswith("bit"):
            method = "gptq"
        else:
            method = "gguf"  # llama.cpp runs fastest on CPU and needs nothing but the converter
    if method not in METHODS:
        return method, level or "", [f"unknown method {method!r}: use gguf, gptq or bnb"]
    if level is None:
        bits = request.bits or 4
        level = LEVEL_FOR_BITS[method].get(bits)
        if level is None:
            supported = ", ".join(str(b) for b in LEVEL_FOR_BITS[method])
            problems.append(f"{method} has no {bits}-bit level here: it supports {supported} bits")
            level = ""
    valid = valid_levels(method)
    if level and level not in valid:
        problems.append(f"{level} is not a {method} level: choose one of {', '.join(sorted(valid))}")
    return method, level, problems


def valid_levels(method: str) -> set[str]:
    """The levels a method (gguf, gptq, bnb) can make; none for an unknown method."""
    if method == "gguf":
        return set(GGUF_LEVELS) | set(FLOAT_BITS)
    if method == "bnb":
        return set(BNB_MODES)
    return {f"{b}bit" for b in GPTQ_BITS} if method == "gptq" else set()


def level_reason(method: str, level: str) -> str:
    """Why one would pick a level: its known trade-off, else what llama.cpp documents; empty when it is not real.

    Never "method level" again: the plan shows those on their own line, so repeating them explains nothing.
    """
    if level not in valid_levels(method):
        return ""
    if level in WHY_LEVEL:
        return WHY_LEVEL[level]
    if level in FLOAT_BITS:
        return (f"unquantized {level}: {FLOAT_BITS[level]:g}-bit floats, the reference quantized variants are "
                "measured against")
    spec = GGUF_LEVELS[level]
    family = "I-quant" if spec.is_iq else "K-quant" if spec.is_k_quant else "legacy block type"
    return (f"llama.cpp {family} at about {spec.nominal_bits:g} bits per weight"
            + (", made with an importance matrix" if spec.needs_imatrix else ""))


def level_bits(method: str, level: str) -> float:
    if method == "gguf":
        if level in FLOAT_BITS:
            return FLOAT_BITS[level]
        spec = GGUF_LEVELS.get(level)
        return spec.nominal_bits if spec else 0.0
    if method == "bnb":
        return 8.0 if level == "int8" else 4.0
    return float(level.removesuffix("bit") or 0) if level.removesuffix("bit").isdigit() else 0.0


def _source_problems(method: str, level: str, facts: SourceFacts, converter_dir: Optional[Path]) -> list[str]:
    if not facts.usable:
        return [f"{facts.name} cannot be used: {facts.reason}"]
    if facts.format in ("gptq", "bnb"):
        return [f"{facts.name} is already quantized ({facts.format} {facts.level}); quantize from its original "
                f"Hugging Face folder instead"]
    if method in ("gptq", "bnb") and facts.format != "hf":
        return [f"{method} needs a Hugging Face folder; {facts.name} is a {facts.format} file"]
    if method == "gguf" and facts.format == "gguf" and level in FLOAT_BITS:
        return [f"{facts.name} is already a GGUF file; quantize it to a K-quant level (q4_k_m, q8_0, ...)"]
    if method == "gguf" and facts.format == "gguf" and facts.level not in FLOAT_BITS:
        return [f"{facts.name} is already quantized ({facts.level}); requantizing loses quality twice — "
                f"quantize from its f16/f32 GGUF or its Hugging Face folder"]
    if encoder := encoder_problems(method, level, facts):
        return encoder
    if method == "gguf" and facts.format == "hf" and converter_dir is not None and facts.architecture:
        known = converter_architectures(converter_dir)
        if known and facts.architecture not in known:
            return [f"llama.cpp's converter does not support {facts.architecture}; use gptq or bnb for {facts.name}"]
    if method == "gptq" and facts.model_type:
        known = gptq_model_types()
        if known and facts.model_type not in known:
            return [f"GPTQModel does not support model_type {facts.model_type!r}; use gguf or bnb"]
    return []


def previous_run(method: str, imatrix: bool, history: list[dict]) -> Optional[dict]:
    """The newest finished run of the same method (and importance-matrix use) with its measurements."""
    for run in history:
        manifest = run.get("manifest") or {}
        if (run.get("method") == method and run.get("status") == "done"
                and bool((run.get("plan") or {}).get("imatrix")) == imatrix
                and manifest.get("parameter_count") and run.get("wall_time_s") and run.get("peak_rss_bytes")):
            return run
    return None


def estimate_seconds(method: str, params: int, imatrix: bool, history: list[dict]) -> tuple[float, str]:
    """Rough time: scaled from the newest finished run of the same method, else the default rate."""
    fixed, per_b, _, _ = DEFAULT_COST[method]
    extra = IMATRIX_S_PER_B * params / 1e9 if imatrix else 0.0
    run = previous_run(method, imatrix, history)
    if run is not None:
        prev_params, prev_time = run["manifest"]["parameter_count"], run["wall_time_s"]
        rate = max(prev_time - fixed, 0.0) / prev_params
        return fixed + rate * params, (f"scaled from run #{run['id']} ({run['level']}, {prev_time:.0f} s for "
                                       f"{prev_params / 1e6:.1f}M parameters)")
    return fixed + per_b * params / 1e9 + extra, "no earlier run of this method to scale from: a rough default rate"


def estimate_ram(method: str, params: int, imatrix: bool, history: list[dict],
                 baseline: int = 0) -> tuple[int, str]:
    """Peak RAM of the whole run and how it was estimated: `baseline` (the process now) plus what the run adds.

    What a run adds is fixed + per_param * parameters. With an earlier finished run of the method,
    the fixed part is corrected from its measurement (its peak less the process it started from, less
    its parameters' share), up or down, as the time estimate is scaled from that run's wall time.
    """
    _, _, fixed, per_param = DEFAULT_COST[method]
    run = previous_run(method, imatrix, history)
    if run is None:
        return (int(baseline + fixed + per_param * params),
                f"{baseline / GIB:.2f} GiB for this process + a default {fixed / GIB:.2f} GiB + {per_param:g} bytes "
                "per parameter (no earlier run of this method to correct it from)")
    prev_params, peak = run["manifest"]["parameter_count"], run["peak_rss_bytes"]
    # Runs recorded before plans kept their baseline started from an unknown process: count all of it.
    prev_base = int((run.get("plan") or {}).get("baseline_rss_bytes") or 0)
    measured_fixed = max(0.0, peak - prev_base - per_param * prev_params)
    ram = int(baseline + measured_fixed + per_param * params)
    over = (f"over a {prev_base / GIB:.2f} GiB process" if prev_base
            else "(its starting process unrecorded: all counted)")
    return ram, (f"corrected from run #{run['id']} ({run.get('level')}: peak {peak / GIB:.2f} GiB measured {over}; "
                 f"{measured_fixed / GIB:.2f} GiB + {per_param:g} bytes per parameter on top of this process's "
                 f"{baseline / GIB:.2f} GiB)")


def _gguf_steps(level: str, facts: SourceFacts, imatrix: bool, group_size: Optional[int]) -> tuple[list[str], int]:
    steps, disk = [], 0
    if facts.format == "hf" and level not in FLOAT_BITS:
        steps.append("convert the Hugging Face folder to an f16 GGUF (temporary) with llama.cpp's converter")
        disk += facts.parameter_count * 2
    elif facts.format == "hf":
        steps.append(f"convert the Hugging Face folder to a {level} GGUF with llama.cpp's converter")
    if imatrix:
        steps.append("compute an importance matrix from the calibration text with llama.cpp")
    if level not in FLOAT_BITS:
        steps.append(f"quantize to {level} with llama.cpp" + (" using the importance matrix" if imatrix else ""))
    return steps, disk


def _gptq_steps(level: str, facts: SourceFacts, imatrix: bool, group_size: Optional[int]) -> tuple[list[str], int]:
    group = group_size or DEFAULT_GROUP_SIZE
    return [f"quantize with GPTQModel ({level}, group size {group}) on CPU, layer by layer"], facts.weight_bytes // 4


def _bnb_steps(level: str, facts: SourceFacts, imatrix: bool, group_size: Optional[int]) -> tuple[list[str], int]:
    return [f"quantize with bitsandbytes ({level}) through transformers on CPU"], facts.weight_bytes // 8


# The steps of each method and the scratch disk they need on top of the output.
STEP_PLANNERS = {"gguf": _gguf_steps, "gptq": _gptq_steps, "bnb": _bnb_steps}


def make_plan(request: QuantRequest, facts: SourceFacts, models_dir: Path, machine: Machine,
              history: list[dict], converter_dir: Optional[Path] = None) -> QuantPlan:
    """The plan for a request on this machine; refused plans carry their problems."""
    method, level, problems = choose_method_and_level(request)
    problems += _source_problems(method, level, facts, converter_dir)
    checkable = bool(level) and not problems  # the shapes are read only for a request that names a real level
    params = facts.parameter_count
    bits = level_bits(method, level) if level else 0.0
    # Without a level there is nothing to make: no output name, steps or estimates (a refusal shows none).
    name = request.name or (default_output_name(facts.name, method, level, request.group_size) if level else "")
    if method == "gguf" and name and not name.endswith(".gguf"):
        name += ".gguf"
    output = Path(models_dir) / name if name else None
    if output is not None and output.exists() and not request.overwrite:
        problems.append(f"{name} already exists in {models_dir}: name the output (… as NEWNAME) or remove it")

    expected = expected_output_bytes(facts, method, bits) if level else 0
    steps, disk, calibration, notes = [], expected, None, []
    imatrix = request.imatrix and method == "gguf"
    if method == "gguf" and getattr(GGUF_LEVELS.get(level), "needs_imatrix", False) and not imatrix:
        imatrix = True
        notes.append(f"{level} needs an importance matrix: one will be computed from the calibration text")
    if request.imatrix and method != "gguf":
        notes.append("an importance matrix is a llama.cpp (gguf) feature; ignored for " + method)
    if request.imatrix and not problems:
        problems += encoder_problems(method, level, facts, imatrix=True)
    shaped = shape_verdict(method, level, source=facts.name, path=facts.path, fmt=facts.format,
                           group_size=request.group_size, imatrix=imatrix, converter_dir=converter_dir) \
        if checkable else ShapeVerdict(group_size=request.group_size)
    if shaped.expected_bytes:
        disk += shaped.expected_bytes - expected
        expected = shaped.expected_bytes
    problems += shaped.problems
    notes += shaped.notes
    if level and method in STEP_PLANNERS:
        method_steps, method_disk = STEP_PLANNERS[method](level, facts, imatrix, shaped.group_size)
        steps += method_steps
        disk += method_disk
    if level and (method == "gptq" or imatrix):
        calibration = str(request.calibration_file) if request.calibration_file else \
            "built-in: Python standard library docstrings (general English prose)"

    known = method in DEFAULT_COST and bool(level)
    ram, ram_basis = estimate_ram(method, params, imatrix, history, machine.process_rss) if known else (0, "")
    seconds, basis = estimate_seconds(method, params, imatrix, history) if known else (0.0, "")
    if ram * MARGIN > machine.available_ram:
        problems.append(f"needs about {ram / GIB:.1f} GiB of RAM, {machine.available_ram / GIB:.1f} GiB is available: "
                        "close other programs or pick gguf, which streams tensors")
    if disk * MARGIN > machine.free_disk:
        problems.append(f"needs about {disk / GIB:.2f} GiB of disk, {machine.free_disk / GIB:.2f} GiB is free "
                        f"in {models_dir}: free space or set LQMF_MODELS_DIR")
    recommendation = level_reason(method, level)
    if recommendation and request.method is None and request.level is None:
        recommendation += " (chosen because you named no method: gguf is the fastest to run on CPU)"
    return QuantPlan(
        source=facts.name, source_path=str(facts.path), source_format=facts.format, method=method, level=level,
        bits=bits, output_name=name, output_path=str(output or ""), parameter_count=params, steps=steps,
        calibration=calibration, imatrix=imatrix, fidelity=request.fidelity, expected_size_bytes=expected,
        expected_peak_ram_bytes=ram, disk_needed_bytes=disk, available_ram_bytes=machine.available_ram,
        free_disk_bytes=machine.free_disk, estimated_seconds=round(seconds, 1), estimate_basis=basis,
        recommendation=recommendation, overwrite=request.overwrite,
        calibration_file=str(request.calibration_file) if request.calibration_file else None,
        problems=problems, notes=notes, baseline_rss_bytes=machine.process_rss, ram_basis=ram_basis,
        group_size=shaped.group_size if method == "gptq" else None,
        expected_bits_per_weight=round(shaped.bits_per_weight, 4), tensor_types=shaped.tensor_types,
        alternative=shaped.alternative,
    )
