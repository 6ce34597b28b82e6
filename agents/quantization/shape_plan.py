"""The part of a plan that comes from tensor shapes: the expected output, refusals, and settings that work instead.

One function per method (a dispatch table); each reads the source's shapes once (agents.quantization.shapes)
and says, before any work starts, what the output will really be:
- gguf: every tensor's type as llama.cpp will choose it (agents.quantization.gguf_mix), so the size counts
  the shape fallbacks and the level's mix; when fallbacks happen the plan says how many, which types and why,
  and offers a level with 32-wide blocks where one makes a smaller file.
- gptq: the group size against every quantized Linear's input width and the CPU 4-bit kernel's rules; a
  plan that would fail at the verify step is refused, naming the tensor, and offered the group size that works.
- bnb: bitsandbytes' CPU kernels pad partial blocks (a 7 x 5 matrix quantizes to nf4, fp4 and int8 alike),
  so no shape is refused; the estimate stays the per-parameter one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from agents.quantization.shapes import (
    GPTQ_GROUP_SIZES,
    ModelShapes,
    gptq_bytes,
    gptq_linears,
    gptq_problems,
    gptq_working_group_size,
    read_shapes,
)
from lqmf.base.units import format_bytes

DEFAULT_GROUP_SIZE = 128  # GPTQModel's default, and what quantize_gptq uses unless a request names another
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Levels with 32-wide blocks to offer when a level's 256-wide blocks do not fit the rows, nearest first.
NARROW_ALTERNATIVES = {
    **dict.fromkeys(("q4_k_m", "q4_k_s", "iq4_xs"), ("iq4_nl", "q4_0")),
    **dict.fromkeys(("q5_k_m", "q5_k_s"), ("q5_0",)),
    "q6_k": ("q5_1", "q5_0"),
    **dict.fromkeys(("q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "iq3_m", "iq3_s"), ("iq4_nl", "q4_0")),
}


@dataclass
class ShapeVerdict:
    """What the shapes say about a plan; expected_bytes None: no shapes to read (the plan keeps its estimate)."""

    expected_bytes: Optional[int] = None
    bits_per_weight: float = 0.0  # as the manifest measures it: weight bytes over parameters
    tensor_types: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alternative: Optional[str] = None  # the words to add to or change in the request for a plan that works
    group_size: Optional[int] = None


@dataclass(frozen=True)
class _Ask:
    """The request as the shape checks need it."""

    source: str
    path: Path
    format: str
    level: str
    group_size: Optional[int]
    imatrix: bool
    converter_dir: Optional[Path]


def shape_verdict(method: str, level: str, *, source: str, path: Path, fmt: str, group_size: Optional[int] = None,
                  imatrix: bool = False, converter_dir: Optional[Path] = None) -> ShapeVerdict:
    """The shape-derived part of the plan of `method` `level` from the source at `path` (hf folder or gguf file)."""
    check = SHAPE_CHECKS.get(method)
    verdict = ShapeVerdict()
    if method == "gptq":
        verdict.group_size = group_size or DEFAULT_GROUP_SIZE
    elif group_size is not None:
        verdict.notes.append(f"a group size is a GPTQ setting; {method} ignores it")
    shapes = read_shapes(path, fmt) if check is not None else None
    if shapes is None or check is None:
        return verdict
    check(_Ask(source, Path(path), fmt, level, group_size, imatrix, converter_dir), shapes, verdict)
    return verdict


def _gguf(ask: _Ask, shapes: ModelShapes, verdict: ShapeVerdict) -> None:
    from agents.quantization.gguf_mix import FLOAT_TYPES, float_gguf, predict_float, predict_mix

    source = float_gguf(shapes, ask.path, ask.level if ask.level in FLOAT_TYPES else "f16", ask.converter_dir)
    mix = predict_float(source, ask.level) if ask.level in FLOAT_TYPES else \
        predict_mix(source, shapes, ask.level, has_imatrix=ask.imatrix)
    verdict.expected_bytes, verdict.bits_per_weight = mix.file_bytes, mix.bits_per_weight
    verdict.tensor_types = mix.histogram
    verdict.notes += mix.notes
    if not mix.fallbacks:
        return
    verdict.notes.append(_fallback_note(mix))
    for other in NARROW_ALTERNATIVES.get(ask.level, ()):
        alt = predict_mix(source, shapes, other, has_imatrix=ask.imatrix)
        if len(alt.fallbacks) < len(mix.fallbacks) and alt.file_bytes < mix.file_bytes:
            verdict.alternative = other
            verdict.notes.append(
                f"{other} uses {_block_words(alt)} blocks that fit these rows: about {format_bytes(alt.file_bytes)} "
                f"({alt.bits_per_weight:.2f} bits per weight) instead of {format_bytes(mix.file_bytes)} — "
                f"quantize {ask.source} to {other}")
            break


def _fallback_note(mix) -> str:
    """How many weight matrices fall back, from which type to which, and the row widths that make them."""
    from agents.quantization.gguf_mix import GGML_SIZES

    moves: dict[str, int] = {}
    widths: dict[int, list[int]] = {}  # block size -> the row widths it does not divide
    for t in mix.fallbacks:
        move = f"{t.wanted} -> {t.type}"
        moves[move] = moves.get(move, 0) + 1
        widths.setdefault(GGML_SIZES[t.wanted][0], []).append(t.columns)
    matrices = sum(1 for t in mix.tensors if t.wanted != t.source_type)  # the ones llama.cpp quantizes
    counted = ", ".join(f"{n} {move}" for move, n in sorted(moves.items(), key=lambda kv: -kv[1]))
    why = "; ".join(f"{_widths(w)} wide, not a multiple of {block}" for block, w in sorted(widths.items()))
    return (f"{len(mix.fallbacks)} of {matrices} weight matrices fall back to another type ({counted}): llama.cpp "
            f"stores a type only in whole blocks per row, and these rows are {why}. The plan counts them: "
            f"{mix.bits_per_weight:.2f} bits per weight")


def _widths(widths: list[int]) -> str:
    distinct = sorted(set(widths))
    return ", ".join(map(str, distinct[:4])) + (" ..." if len(distinct) > 4 else "")


def _block_words(mix) -> str:
    from agents.quantization.gguf_mix import GGML_SIZES
    from agents.quantization.gguf_quant import GGUF_LEVELS

    main = GGUF_LEVELS[mix.level].main_type
    return f"{GGML_SIZES[main][0]}-wide {main}"


def _gptq(ask: _Ask, shapes: ModelShapes, verdict: ShapeVerdict) -> None:
    bits = int(ask.level.removesuffix("bit")) if ask.level.removesuffix("bit").isdigit() else 4
    group = verdict.group_size or DEFAULT_GROUP_SIZE
    weights = gptq_bytes(shapes, bits, group)
    params = sum(t.numel for t in shapes.tensors)
    verdict.expected_bytes = weights + _side_files_bytes(ask)
    verdict.bits_per_weight = weights * 8 / params if params else 0.0
    problems = gptq_problems(shapes, bits, group)
    if not problems:
        return
    text = str(problems[0])
    if problems[0].tensor in {t.name for t in gptq_linears(shapes)}:
        if len(problems) > 1:
            text += f" (and {len(problems) - 1} more of the {len(gptq_linears(shapes))} Linear weights GPTQ quantizes)"
        # GPTQModel's own checks pass these ("auto padding"): the run would fail minutes later, at the verify step.
        text += ": GPTQModel's CPU 4-bit kernel would fail on it when the output is first loaded"
    working = gptq_working_group_size(shapes, bits)
    if working is not None:
        verdict.alternative = f"with group size {working}"
        text += (f" — quantize {ask.source} to gptq {ask.level} with group size {working} "
                 f"({working} divides every width)")
    else:
        sizes = ", ".join(map(str, GPTQ_GROUP_SIZES))
        text += f" — no group size of {sizes} fits every Linear: use gptq 8bit, gguf or bnb"
    verdict.problems.append(text)


def _side_files_bytes(ask: _Ask) -> int:
    """The config, tokenizer and generation files a folder output carries besides its weights."""
    if not ask.path.is_dir():
        return 64 * 1024
    return 16 * 1024 + sum(p.stat().st_size for p in ask.path.iterdir()
                           if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES) and p.name != "lqmf.json")


SHAPE_CHECKS: dict[str, Callable[[_Ask, ModelShapes, ShapeVerdict], None]] = {"gguf": _gguf, "gptq": _gptq}
