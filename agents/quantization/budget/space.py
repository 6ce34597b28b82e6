"""The choices a budget search has: for each quantizable tensor, the llama.cpp types its row width allows, and
what each costs in bytes of the file.

Read from the f16 GGUF the search starts from. A type whose block does not divide a tensor's rows is not
offered for it (llama-quantize would silently write another: agents.quantization.gguf_mix.FALLBACK), so the
size of every mix is known exactly before it is written (gguf_mix.GGUFMix.file_bytes, tested against real
llama-quantize runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from agents.quantization.gguf_mix import (
    GGML_SIZES,
    GGUF_ALIGNMENT,
    TOKEN_EMBD,
    FloatGGUF,
    GGUFMix,
    PlannedTensor,
    category,
    file_order,
    layer_of,
    quantizable,
    row_bytes,
)
from agents.quantization.shapes import read_shapes
from lqmf.base.errors import LQMFError

# Offered to every tensor whose rows they divide, from the fewest bits up. Q8_0 is the top: a budget that
# needs more than Q8_0 everywhere asks for no quantization (f16 is the reference every KLD is measured from).
# IQ4_NL and IQ4_XS run without an importance matrix; IQ3 is offered only with one (llama.cpp refuses the low IQ
# types without it). IQ2 is left out: its grid search makes one quantization of SmolLM2 take ~40 s on 2 cores.
PLAIN_TYPES = ("Q2_K", "Q3_K", "IQ4_XS", "Q4_0", "IQ4_NL", "Q4_K", "Q4_1", "Q5_0", "Q5_K", "Q5_1", "Q6_K", "Q8_0")
IMATRIX_TYPES = ("IQ3_XXS", "IQ3_S")
TOP_TYPE = "Q8_0"


def aligned(nbytes: int) -> int:
    """Bytes a tensor's data takes in the file (every tensor starts on GGUF_ALIGNMENT)."""
    return -(-nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT


@dataclass(frozen=True)
class Slot:
    """One quantizable tensor and the types offered to it, with their bytes in the file."""

    name: str
    shape: tuple[int, ...]
    source_type: str
    role: str  # gguf_mix.category: attn_q, ffn_down, token_embd ...
    layer: int  # -1 outside the blocks
    options: tuple[str, ...]
    nbytes: Mapping[str, int]

    @property
    def columns(self) -> int:
        return self.shape[-1]


@dataclass(frozen=True)
class MixSpace:
    """Every tensor of the f16 GGUF: the quantizable ones as slots, the rest as fixed bytes."""

    source: Path
    slots: tuple[Slot, ...]
    fixed: tuple[PlannedTensor, ...]  # norms and other tensors llama.cpp never quantizes
    header_bytes: int
    arch: str
    imatrix: bool

    @property
    def fixed_bytes(self) -> int:
        return self.header_bytes + sum(aligned(t.nbytes) for t in self.fixed)

    def file_bytes(self, types: Mapping[str, str]) -> int:
        """The size of the file llama-quantize writes for this assignment (tensor name -> type)."""
        return self.fixed_bytes + sum(s.nbytes[types[s.name]] for s in self.slots)

    def as_mix(self, types: Mapping[str, str], label: str) -> GGUFMix:
        """The assignment as gguf_mix's prediction (histogram, bits per weight), in the file's order."""
        planned = {t.name: t for t in self.fixed}
        planned.update({s.name: PlannedTensor(s.name, s.shape, s.source_type, types[s.name], types[s.name])
                        for s in self.slots})
        ordered = sorted(planned.values(), key=lambda t: (layer_of(t.name), t.name))
        return GGUFMix(label, ordered, self.header_bytes)

    def uniform(self, ggml_type: str) -> dict[str, str]:
        """Every slot at `ggml_type` where offered, else at its nearest offered type with more bits."""
        return {s.name: ggml_type if ggml_type in s.options else _next_up(s, ggml_type) for s in self.slots}

    def smallest(self) -> dict[str, str]:
        return {s.name: min(s.options, key=lambda t, s=s: s.nbytes[t]) for s in self.slots}

    def largest(self) -> dict[str, str]:
        return {s.name: TOP_TYPE for s in self.slots}


def _next_up(slot: Slot, ggml_type: str) -> str:
    want = bits(ggml_type)
    above = [t for t in slot.options if bits(t) >= want]
    return min(above, key=bits) if above else TOP_TYPE


def bits(ggml_type: str) -> float:
    block, size = GGML_SIZES[ggml_type]
    return size * 8 / block


def offered_types(columns: int, imatrix: bool) -> tuple[str, ...]:
    """The candidate types whose blocks divide a row `columns` wide, fewest bits first."""
    names = PLAIN_TYPES + (IMATRIX_TYPES if imatrix else ())
    return tuple(sorted((t for t in names if columns % GGML_SIZES[t][0] == 0), key=bits))


def read_space(f16_gguf: Path, *, imatrix: bool) -> MixSpace:
    """The search space of an f16 (or bf16 / f32) GGUF."""
    shapes = read_shapes(Path(f16_gguf), "gguf")
    if shapes is None:
        raise LQMFError(f"cannot read the tensors of {f16_gguf}", "is it a GGUF model file?")
    return space_of(FloatGGUF(shapes.tensors, shapes.header_bytes, shapes.architecture), Path(f16_gguf),
                    imatrix=imatrix)


def space_of(source: FloatGGUF, path: Path, *, imatrix: bool) -> MixSpace:
    """The search space of a float GGUF as read, or as the converter will write it (gguf_mix.float_gguf)."""
    slots, fixed = [], []
    for t in file_order(list(source.tensors)):
        if quantizable(t) and t.columns % 32 == 0:
            options = offered_types(t.columns, imatrix)
            sizes = {o: aligned(t.numel // t.columns * row_bytes(o, t.columns)) for o in options}
            slots.append(Slot(t.name, t.shape, t.dtype, category(t.name), layer_of(t.name), options, sizes))
        else:
            fixed.append(PlannedTensor(t.name, t.shape, t.dtype, t.dtype, t.dtype))
    return MixSpace(Path(path), tuple(slots), tuple(fixed), source.header_bytes, source.arch, imatrix)


def is_embedding(slot: Slot) -> bool:
    return slot.role == TOKEN_EMBD
