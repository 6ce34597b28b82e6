"""What llama.cpp's quantizer will write for each tensor, and so the size of the file, before it runs.

A port of llama_tensor_get_type in llama.cpp's src/llama-quant.cpp (the copy llama-cpp-python 0.3.36
vendors, which LQMF's in-process quantizer and llama-quantize both run). Per tensor, in the file's
order (non-layer tensors, then layer by layer): the level's default type; its mix rules (attn_v and
ffn_down get more bits in some layers, the output and a tied token embedding Q6_K or Q8_0); then the
shape fallback: a row width the type's block does not divide takes another type (576 columns: Q4_K ->
Q5_0, Q6_K -> Q8_0). On SmolLM2 (576 wide) that fallback alone made q4_k_m 28% larger than its nominal
bits said. tests/test_shape_plans.py holds the prediction against real llama-quantize runs, tensor by tensor.

Sources: an f16/bf16/f32 GGUF (its tensor infos), or an HF folder (safetensors shapes, renamed to GGUF
names with the converter's tensor map and typed as llama.cpp's converter types them).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from agents.quantization.gguf_levels import GGUF_LEVELS
from agents.quantization.shapes import ModelShapes, Tensor

log = logging.getLogger(__name__)

# ggml type -> (block size in weights, bytes per block), as gguf.GGML_QUANT_SIZES has them.
GGML_SIZES: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22),
    "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
    "Q5_K": (256, 176), "Q6_K": (256, 210), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ3_XXS": (256, 98),
    "IQ1_S": (256, 50), "IQ4_NL": (32, 18), "IQ3_S": (256, 110), "IQ2_S": (256, 82), "IQ4_XS": (256, 136),
    "IQ1_M": (256, 56),
}
GGUF_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT: every tensor's data starts on it
# tensor_type_fallback: where a tensor goes when its row width is not a multiple of the type's block.
FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"),
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
FLOAT_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}

# -- which tensors llama.cpp quantizes at all (tensor_allows_quantization) ------------------------------------
NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight", "time_mix_first.weight",
    "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
NEVER_QUANTIZED_NAMES = frozenset({"position_embd.weight", "token_types.weight"})
# The converter keeps these in F32 whatever the outtype (conversion/base.py: "always in float32").
CONVERTER_F32 = ("ffn_gate_inp", "position_embd", "token_types", "ssm_conv1d", "shortconv.conv", "time_mix_first",
                 "time_mix_w1", "time_mix_w2", "time_mix_decay_w1", "time_mix_decay_w2", "time_mix_lerp_fused")


def row_bytes(ggml_type: str, columns: int) -> int:
    block, size = GGML_SIZES[ggml_type]
    return size * columns // block


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the output: its GGUF name and shape, its type in the float GGUF, and what it will be."""

    name: str
    shape: tuple[int, ...]  # torch order: (rows, columns)
    source_type: str
    wanted: str  # the level's choice (mix rules included), before the shape fallback
    type: str

    @property
    def columns(self) -> int:
        return self.shape[-1] if self.shape else 1

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel // self.columns * row_bytes(self.type, self.columns)

    @property
    def fell_back(self) -> bool:
        return self.wanted != self.type


@dataclass
class GGUFMix:
    """The predicted output of one level: every tensor's type, and the file's size."""

    level: str
    tensors: list[PlannedTensor]
    header_bytes: int
    notes: list[str] = field(default_factory=list)  # what the prediction could not know exactly

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def file_bytes(self) -> int:
        return self.header_bytes + sum(-(-t.nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT for t in self.tensors)

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        """As the manifest measures it: tensor bytes over parameters, metadata not counted."""
        params = self.parameter_count
        return self.tensor_bytes * 8 / params if params else 0.0

    @property
    def histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type] = counts.get(t.type, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def fallbacks(self) -> list[PlannedTensor]:
        return [t for t in self.tensors if t.fell_back]


# -- the type choice, category by category -------------------------------------------------------------------
OUTPUT, TOKEN_EMBD, ATTN_QKV, ATTN_KV_B, ATTN_V, ATTN_K, ATTN_Q, ATTN_OUTPUT, FFN_UP, FFN_GATE, FFN_DOWN, OTHER = (
    "output", "token_embd", "attn_qkv", "attn_kv_b", "attn_v", "attn_k", "attn_q", "attn_output", "ffn_up",
    "ffn_gate", "ffn_down", "other")
# tensor_get_category: the first substring that matches, in this order.
CATEGORY_BY_SUBSTRING = (
    ("attn_qkv.weight", ATTN_QKV), ("attn_kv_b.weight", ATTN_KV_B), ("attn_v.weight", ATTN_V),
    ("attn_k.weight", ATTN_K), ("attn_q.weight", ATTN_Q), ("attn_output.weight", ATTN_OUTPUT),
    ("ffn_up", FFN_UP), ("ffn_gate", FFN_GATE), ("ffn_down", FFN_DOWN),
)
ATTN_V_LIKE = frozenset({ATTN_V, ATTN_QKV, ATTN_KV_B})
LOW_IQ = frozenset({"iq2_xxs", "iq2_xs", "iq1_s", "iq2_s", "iq2_m", "iq1_m"})  # the branch llama.cpp checks first
IQ3S_LOW = frozenset({"iq2_s", "iq2_m"})


def category(name: str) -> str:
    if name == "output.weight":
        return OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return TOKEN_EMBD
    return next((cat for sub, cat in CATEGORY_BY_SUBSTRING if sub in name), OTHER)


def layer_of(name: str) -> int:
    match = re.match(r"blk\.(\d+)\.", name)
    return int(match.group(1)) if match else -1


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class _State:
    """quantize_state_impl: the model's facts and the counters llama.cpp advances tensor by tensor."""

    level: str
    arch: str
    n_layer: int
    n_gqa: int
    n_expert: int
    has_imatrix: bool
    tied: bool
    is_70b: bool
    n_attention_wv: int
    i_attention_wv: int = 0
    i_ffn_down: int = 0

    def ffn_layer(self, name: str) -> tuple[int, int]:
        """layer_info: the counter for a dense model, the layer in the name for a mixture of experts."""
        return (layer_of(name) if self.n_expert > 1 else self.i_ffn_down), self.n_layer


Rule = Callable[[_State, str], Optional[str]]  # (state, tensor name) -> a type, or None: keep the default

# attn_v (and the fused attn_qkv, attn_kv_b, which llama.cpp sends down the same branch: its own ATTENTION_QKV
# branch comes after it and is never reached).
ATTN_V_RULES: dict[str, Rule] = {
    "q2_k": lambda s, n: "Q4_K" if s.n_gqa >= 4 else "Q3_K",
    "iq3_xxs": lambda s, n: "Q4_K" if s.n_gqa >= 4 else ("IQ3_XXS" if s.has_imatrix else "IQ3_S"),
    "iq3_s": lambda s, n: "Q4_K" if s.n_gqa >= 4 else None,
    "iq3_m": lambda s, n: "Q4_K",
    "q3_k_m": lambda s, n: "Q5_K" if s.i_attention_wv < 2 else "Q4_K",
    "q3_k_l": lambda s, n: "Q5_K",
    "iq4_nl": lambda s, n: "Q5_K" if s.n_gqa >= 4 else None,
    "iq4_xs": lambda s, n: "Q5_K" if s.n_gqa >= 4 else None,
    "q4_k_m": lambda s, n: "Q6_K" if use_more_bits(s.i_attention_wv, s.n_attention_wv) else None,
    "q5_k_m": lambda s, n: "Q6_K" if use_more_bits(s.i_attention_wv, s.n_attention_wv) else None,
    "q4_k_s": lambda s, n: "Q5_K" if s.i_attention_wv < 4 else None,
}


def _ffn_down_q4_k_m(s: _State, name: str) -> Optional[str]:
    i, n = s.ffn_layer(name)
    if s.arch == "falcon":
        return "Q6_K" if i < n // 16 else "Q5_K" if use_more_bits(i, n) else "Q4_K"
    return "Q6_K" if use_more_bits(i, n) else None


def _ffn_down_q3_k_m(s: _State, name: str) -> Optional[str]:
    i, n = s.ffn_layer(name)
    if i < n // 16:
        return "Q5_K"
    return "Q4_K" if s.arch != "falcon" or use_more_bits(i, n) else "Q3_K"


def _first_eighth(s: _State, name: str) -> bool:
    i, n = s.ffn_layer(name)
    return i < n // 8


FFN_DOWN_RULES: dict[str, Rule] = {
    "q2_k": lambda s, n: "Q3_K",
    "iq3_xxs": lambda s, n: None if s.has_imatrix else ("Q4_K" if _first_eighth(s, n) else "Q3_K"),
    "q3_k_m": _ffn_down_q3_k_m,
    "iq3_m": lambda s, n: "Q4_K" if _first_eighth(s, n) or (s.n_expert == 8 and use_more_bits(*s.ffn_layer(n)))
    else None,
    "q3_k_l": lambda s, n: "Q4_K" if s.arch == "falcon" else "Q5_K",
    "q4_k_m": _ffn_down_q4_k_m,
    "iq4_nl": lambda s, n: "Q5_K" if _first_eighth(s, n) and not s.has_imatrix else None,
    "iq4_xs": lambda s, n: "Q5_K" if _first_eighth(s, n) and not s.has_imatrix else None,
    "q5_k_m": lambda s, n: "Q6_K" if use_more_bits(*s.ffn_layer(n)) else None,
    "q4_k_s": lambda s, n: "Q5_K" if s.arch != "falcon" and _first_eighth(s, n) else None,
    "q4_0": lambda s, n: "Q4_1" if s.has_imatrix and _first_eighth(s, n) else None,
    "q5_0": lambda s, n: "Q5_1" if s.has_imatrix and _first_eighth(s, n) else None,
}
ATTN_OUTPUT_TYPES = {"q2_k": "Q3_K", "iq3_xxs": "IQ3_S", "q3_k_m": "Q4_K", "q3_k_l": "Q5_K", "iq3_m": "Q4_K"}
ATTN_OUTPUT_MOE_Q5K = frozenset({"q2_k", "iq3_xxs", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq3_s",
                                 "iq3_m", "iq4_xs"})
TOKEN_EMBD_TYPES = {"iq2_xxs": "Q2_K", "iq2_xs": "Q2_K", "iq1_s": "Q2_K", "iq1_m": "Q2_K", "iq2_s": "IQ3_S",
                    "iq2_m": "IQ3_S", "iq3_xxs": "IQ3_S"}
OUTPUT_Q5K = LOW_IQ | {"iq3_xxs"}


def _output(s: _State, t: Tensor, default: str) -> str:
    if s.arch == "falcon" or t.columns % GGML_SIZES[default][0]:
        return "Q8_0"
    if s.level in OUTPUT_Q5K:
        return "Q5_K"
    return default if default == "Q8_0" else "Q6_K"


def _attn_v(s: _State, t: Tensor, default: str) -> str:
    rule = ATTN_V_RULES.get(s.level)
    chosen = (rule(s, t.name) if rule else None) or default
    if s.is_70b and chosen in ("Q3_K", "Q4_K"):
        chosen = "Q5_K"  # 8 heads share attn_v in the 70B: more bits cost little there
    if s.n_expert == 8:
        chosen = "Q8_0"
    s.i_attention_wv += 1
    return chosen


def _attn_k(s: _State, t: Tensor, default: str) -> str:
    if s.n_expert == 8:
        return "Q8_0"
    return "IQ2_S" if s.level == "iq3_xxs" else default


def _attn_q(s: _State, t: Tensor, default: str) -> str:
    return "IQ2_S" if s.level == "iq3_xxs" else default


def _ffn_down(s: _State, t: Tensor, default: str) -> str:
    rule = FFN_DOWN_RULES.get(s.level)
    chosen = (rule(s, t.name) if rule else None) or default
    s.i_ffn_down += 1
    return chosen


def _attn_output(s: _State, t: Tensor, default: str) -> str:
    if s.arch == "falcon":
        return "Q4_K" if s.level == "q3_k_l" else default
    if s.n_expert == 8:
        return "Q5_K" if s.level in ATTN_OUTPUT_MOE_Q5K else default
    return ATTN_OUTPUT_TYPES.get(s.level, default)


def _low_iq(s: _State, cat: str, t: Tensor, default: str) -> str:
    """The 1- and 2-bit IQ levels' own branch (checked before the per-category rules)."""
    if cat in ATTN_V_LIKE:
        s.i_attention_wv += 1
        if s.n_gqa >= 4 or s.n_expert >= 4:
            return "Q4_K"
        return "IQ3_S" if s.level in IQ3S_LOW else "Q2_K"
    if s.n_expert == 8 and cat == ATTN_K:
        return "Q4_K"
    if cat == FFN_DOWN:
        first = s.i_ffn_down < s.n_layer // 8
        s.i_ffn_down += 1
        return ("IQ3_S" if s.level in IQ3S_LOW else "Q2_K") if first else default
    if cat == ATTN_OUTPUT:
        if s.n_expert == 8:
            return "Q5_K"
        return {"iq1_s": "IQ2_XXS", "iq1_m": "IQ2_XXS", "iq2_s": "IQ3_S", "iq2_m": "IQ3_S"}.get(s.level, default)
    return default


CATEGORY_RULES: dict[str, Callable[[_State, Tensor, str], str]] = {
    ATTN_V: _attn_v, ATTN_QKV: _attn_v, ATTN_KV_B: _attn_v, ATTN_K: _attn_k, ATTN_Q: _attn_q,
    FFN_DOWN: _ffn_down, ATTN_OUTPUT: _attn_output,
}


def _chosen_type(s: _State, t: Tensor, default: str) -> str:
    """llama_tensor_get_type_impl: the level's mix."""
    cat = category(t.name)
    if cat == OUTPUT or (s.tied and cat == TOKEN_EMBD):
        return _output(s, t, default)
    if cat == TOKEN_EMBD:
        return TOKEN_EMBD_TYPES.get(s.level, default)
    if s.level in LOW_IQ:
        return _low_iq(s, cat, t, default)
    rule = CATEGORY_RULES.get(cat)
    return rule(s, t, default) if rule else default


def fallback_type(wanted: str, columns: int) -> str:
    """tensor_type_fallback: the type a row `columns` wide can take when `wanted`'s block does not divide it."""
    if columns % GGML_SIZES[wanted][0] == 0:
        return wanted
    chosen = FALLBACK.get(wanted, wanted)  # a 32-wide type has nothing smaller: the check below makes it F16
    return chosen if columns % GGML_SIZES[chosen][0] == 0 else "F16"


def quantizable(t: Tensor) -> bool:
    """tensor_allows_quantization (the output tensor is quantized too: llama-quantize's default)."""
    return (t.n_dims >= 2 and t.name.endswith("weight") and t.name not in NEVER_QUANTIZED_NAMES
            and not any(part in t.name for part in NEVER_QUANTIZED))


def file_order(tensors: list[Tensor]) -> list[Tensor]:
    """llama.cpp's weights_map order: tensors outside the blocks, then block by block, by name within each."""
    return sorted(tensors, key=lambda t: (layer_of(t.name), t.name))


@dataclass(frozen=True)
class FloatGGUF:
    """The f16 (or bf16 / f32) GGUF a level is quantized from: the source GGUF, or what the converter will write."""

    tensors: tuple[Tensor, ...]  # GGUF names and types
    header_bytes: int
    arch: str  # gguf-py's architecture name: llama, phi3, falcon ...
    notes: tuple[str, ...] = ()


def predict_mix(source: FloatGGUF, shapes: ModelShapes, level: str, *, has_imatrix: bool = False) -> GGUFMix:
    """Every tensor's type after llama.cpp quantizes `source` to `level` (a level of GGUF_LEVELS)."""
    default = GGUF_LEVELS[level].main_type
    ordered = file_order(list(source.tensors))
    state = _State(
        level=level, arch=source.arch, n_layer=shapes.n_layer, n_expert=shapes.n_expert, has_imatrix=has_imatrix,
        n_gqa=shapes.n_head // shapes.n_head_kv if shapes.n_head_kv else 0,
        tied=not any(t.name == "output.weight" for t in ordered),
        # llama.cpp's LLM_TYPE_70B: a llama of 80 layers with grouped-query attention.
        is_70b=source.arch == "llama" and shapes.n_layer == 80 and shapes.n_head != shapes.n_head_kv,
        n_attention_wv=sum(category(t.name) in ATTN_V_LIKE for t in ordered),
    )
    planned = []
    for t in ordered:
        if quantizable(t):
            wanted = _chosen_type(state, t, default)
            planned.append(PlannedTensor(t.name, t.shape, t.dtype, wanted, fallback_type(wanted, t.columns)))
        else:
            planned.append(PlannedTensor(t.name, t.shape, t.dtype, t.dtype, t.dtype))
    return GGUFMix(level, planned, source.header_bytes, list(source.notes))


def predict_float(source: FloatGGUF, outtype: str) -> GGUFMix:
    """The converter's own output at f16 / bf16 / f32 (no quantizer step)."""
    return GGUFMix(outtype, [PlannedTensor(t.name, t.shape, t.dtype, t.dtype, t.dtype) for t in source.tensors],
                   source.header_bytes, list(source.notes))


# -- an HF folder as the converter will write it ------------------------------------------------------------
def float_gguf(shapes: ModelShapes, path: Path, outtype: str = "f16",
               converter_dir: Optional[Path] = None) -> FloatGGUF:
    """The float GGUF a quantized level starts from: a GGUF source itself, or what the converter makes of an HF
    folder (GGUF names from gguf-py's tensor map for the architecture the converter registers the HF class under,
    typed as the converter types them).

    A tensor the map has no name for is left out: the converter either skips it too (BERT's pooler and
    position_ids buffer) or refuses the model, and then no size matters.
    """
    if shapes.format == "gguf":
        return FloatGGUF(shapes.tensors, shapes.header_bytes, shapes.architecture)
    import gguf

    arch = (converter_arch(converter_dir, shapes.architecture) if converter_dir else None) \
        or (shapes.model_type or "").upper()
    model_arch = getattr(gguf.MODEL_ARCH, arch, gguf.MODEL_ARCH.LLAMA)
    name_map = gguf.get_tensor_name_map(model_arch, max(shapes.n_layer, 1))
    wide = FLOAT_TYPES[outtype]
    tensors, unmapped = [], []
    for t in shapes.tensors:
        name = name_map.get_name(t.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            unmapped.append(t.name)
            continue
        f32 = len(t.shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") \
            or any(part in name for part in CONVERTER_F32)
        tensors.append(Tensor(name, t.shape, "F32" if f32 else wide))
    if unmapped:
        log.debug("no GGUF name for %d tensors of %s (left out of the plan): %s", len(unmapped), path,
                  ", ".join(unmapped[:8]))
    return FloatGGUF(tuple(tensors), header_estimate(Path(path), tensors), gguf.MODEL_ARCH_NAMES[model_arch])


@lru_cache(maxsize=64)
def converter_arch(converter_dir: Optional[Path], hf_architecture: str) -> Optional[str]:
    """The gguf MODEL_ARCH name llama.cpp's converter writes for an HF architecture (read from its source)."""
    if converter_dir is None:
        return None
    classes: dict[str, tuple[str, Optional[str]]] = {}  # class -> (parent, model_arch)
    registered: dict[str, str] = {}  # HF architecture -> class
    files = [converter_dir / "convert_hf_to_gguf.py", *sorted((converter_dir / "conversion").glob("*.py"))]
    for file in (f for f in files if f.is_file()):
        text = file.read_text(encoding="utf-8")
        matches = list(re.finditer(r"^class (\w+)\(([\w.]*)", text, re.M))
        for i, match in enumerate(matches):
            body = text[match.end(): matches[i + 1].start() if i + 1 < len(matches) else len(text)]
            arch = re.search(r"^    model_arch = gguf\.MODEL_ARCH\.(\w+)", body, re.M)
            classes[match.group(1)] = (match.group(2).split(".")[-1], arch.group(1) if arch else None)
            decorators = text[text.rfind("\n\n", 0, match.start()): match.start()]
            for args in re.findall(r"@ModelBase\.register\(([^)]*)\)", decorators):
                for name in re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", args):
                    registered[name] = match.group(1)
    cls = registered.get(hf_architecture)
    for _ in range(10):  # the class's own model_arch, or its parent's
        if cls not in classes:
            return None
        parent, arch = classes[cls]
        if arch:
            return arch
        cls = parent
    return None


# -- the metadata before the tensors ------------------------------------------------------------------------
KV_OVERHEAD = 2048  # general.*, {arch}.* hyperparameters, token ids: a few dozen small keys


def header_estimate(folder: Path, tensors: list[Tensor]) -> int:
    """Bytes of the GGUF header the converter will write for an HF folder: its vocabulary dominates.

    Per tensor info: name, dims, type, offset. Per token: the string (8-byte length + UTF-8), a type and,
    for SentencePiece vocabularies, a score; per BPE merge: the string. Then the chat template.
    """
    infos = sum(8 + len(t.name.encode()) + 4 + 8 * max(len(t.shape), 1) + 4 + 8 for t in tensors)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    spm = (folder / "tokenizer.model").is_file()
    vocab, merges = _vocabulary(folder / "tokenizer.json", spm)
    n_tokens = max(len(vocab), int(config.get("vocab_size") or 0))
    tokens = sum(8 + n for n in vocab) + (n_tokens - len(vocab)) * (8 + 12)  # the converter pads with [PAD...]
    per_token = 4 + (4 if spm else 0)  # token type, and a score for SentencePiece
    merge_bytes = sum(8 + len((" ".join(m) if isinstance(m, list) else m).encode()) for m in merges)
    template = _chat_template(folder)
    total = KV_OVERHEAD + infos + tokens + per_token * n_tokens + merge_bytes + len(template.encode())
    return -(-total // GGUF_ALIGNMENT) * GGUF_ALIGNMENT


def _vocabulary(tokenizer: Path, spm: bool) -> tuple[list[int], list]:
    """Each token's byte length as the converter writes it, and the BPE merges (none beside a SentencePiece model)."""
    if not tokenizer.is_file():
        return [], []
    data = json.loads(tokenizer.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    raw_vocab = model.get("vocab") or {}
    vocab = list(raw_vocab) if isinstance(raw_vocab, dict) else [entry[0] for entry in raw_vocab]
    vocab += [a["content"] for a in data.get("added_tokens") or [] if a.get("content") not in raw_vocab]
    special = {a.get("content") for a in data.get("added_tokens") or [] if a.get("special")}
    if model.get("type") == "WordPiece":
        # BERT's converter writes a phantom-space vocabulary: "##ing" -> "ing", "the" -> "\u2581the" (3 bytes more).
        lengths = [len(t.encode()) if t in special else len(t.encode()) - 2 if t.startswith("##")
                   else len(t.encode()) + 3 for t in vocab]
    else:
        lengths = [len(t.encode()) for t in vocab]
    return lengths, ([] if spm else model.get("merges") or [])


def _chat_template(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else json.dumps(template or "")
    return ""


def predict_gguf(shapes: ModelShapes, path: Path, level: str, *, has_imatrix: bool = False,
                 converter_dir: Optional[Path] = None) -> GGUFMix:
    """The output of `level` (a quantized level, or f16 / bf16 / f32) made from the source at `path`."""
    source = float_gguf(shapes, path, level if level in FLOAT_TYPES else "f16", converter_dir)
    if level in FLOAT_TYPES:
        return predict_float(source, level)
    return predict_mix(source, shapes, level, has_imatrix=has_imatrix)
