"""Every tensor's shape, read from a model's files, and the shape rules GPTQModel's CPU kernels hold.

A plan checks these before any work starts: a rule that a kernel enforces only when the output is
first used (GPTQ's CPU int4 kernel, at the verify step) would otherwise cost the whole run. Shapes come
from safetensors headers (HF folders) or GGUF tensor infos; no weights are read. (bitsandbytes' CPU
kernels pad partial blocks: they hold no shape rule, see agents.quantization.shape_plan.)
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lqmf.base.gguf_header import GGUFHeader, Tensor, read_gguf_header  # noqa: F401 (re-exported)
from lqmf.base.source import DTYPE_BYTES, safetensors_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelShapes:
    """The tensors of a source model and the hyperparameters llama.cpp's type choice depends on."""

    format: str  # hf | gguf
    tensors: tuple[Tensor, ...]
    architecture: str  # HF architectures[0], or the GGUF general.architecture
    model_type: Optional[str]
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int
    header_bytes: int = 0  # GGUF only: metadata and tensor infos, exactly as the file has them


def read_shapes(path: Path, fmt: str) -> Optional[ModelShapes]:
    """The shapes of an HF folder or a GGUF file; None for anything else (or files that cannot be read)."""
    reader = SHAPE_READERS.get(fmt)
    if reader is None:
        return None
    try:
        shapes = reader(Path(path))
    except (OSError, ValueError, KeyError, IndexError, struct.error) as exc:  # a damaged header: plan without shapes
        log.warning("could not read tensor shapes of %s: %s", path, exc)
        return None
    return shapes if shapes is not None and shapes.tensors else None  # .bin weights only: no headers to read


def text_config(config: dict) -> dict:
    """The language model's part of a config (multimodal configs nest it)."""
    return config.get("text_config") or config


def _hf_shapes(folder: Path) -> Optional[ModelShapes]:
    if not (folder / "config.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text = text_config(config)
    tensors = tuple(
        Tensor(name, tuple(int(d) for d in info["shape"]), str(info["dtype"]))
        for header in safetensors_headers(folder)
        for name, info in header.items()
        if name != "__metadata__"
    )
    n_head = int(text.get("num_attention_heads") or text.get("n_head") or 0)
    experts = (text.get(key) for key in ("num_local_experts", "num_experts", "n_routed_experts"))
    return ModelShapes(
        format="hf", tensors=tensors, architecture=str((config.get("architectures") or ["unknown"])[0]),
        model_type=config.get("model_type"), n_layer=int(text.get("num_hidden_layers") or text.get("n_layer") or 0),
        n_head=n_head, n_head_kv=int(text.get("num_key_value_heads") or n_head),
        n_expert=int(next((e for e in experts if e), 0) or 0),
    )


def _gguf_shapes(file: Path) -> ModelShapes:
    header = read_gguf_header(file)
    meta = header.metadata
    arch = str(meta.get("general.architecture", "unknown"))
    n_head = int(meta.get(f"{arch}.attention.head_count") or 0)
    return ModelShapes(
        format="gguf", tensors=header.tensors, architecture=arch, model_type=arch,
        n_layer=int(meta.get(f"{arch}.block_count") or 0), n_head=n_head,
        n_head_kv=int(meta.get(f"{arch}.attention.head_count_kv") or n_head),
        n_expert=int(meta.get(f"{arch}.expert_count") or 0), header_bytes=header.data_offset,
    )


SHAPE_READERS = {"hf": _hf_shapes, "gguf": _gguf_shapes}


# -- GPTQ ----------------------------------------------------------------------------------------------------
# GPTQModel quantizes the Linear layers inside the repeated blocks; embeddings, the head and norms stay.
LAYER_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.\d+\.")
NOT_GPTQ = re.compile(r"norm|embed|wte|wpe|lm_head|rotary|\.gate\.weight$|router", re.I)
GPTQ_GROUP_SIZES = (128, 64, 32)  # offered, largest first: a larger group is a smaller file
# The CPU kernel GPTQModel picks for 4-bit weights (TorchAtenLinear: torch's _weight_int4pack_mm_for_cpu)
# accepts these group sizes, needs every input width divisible by the group size and every output width by 16
# (_convert_weight_to_int4pack_for_cpu). GPTQModel's own check passes the rest ("auto padding"), so the
# quantization runs for minutes and fails at the first forward pass.
INT4_CPU_GROUP_SIZES = (32, 64, 128, 256)
INT4_CPU_OUT_MULTIPLE = 16
# 8-bit GPTQ is served by TorchLinear, which dequantizes (any width works, a partial last group too); its
# SUPPORTS_GROUP_SIZE is still a fixed list.
KERNEL_GROUP_SIZES = {4: INT4_CPU_GROUP_SIZES, 8: (16, 32, 64, 128, 256, 512, 1024)}
KERNEL_NAMES = {4: "the CPU 4-bit kernel (torch's int4pack)", 8: "GPTQModel's 8-bit CPU kernel (TorchLinear)"}


def gptq_linears(shapes: ModelShapes) -> list[Tensor]:
    """The 2-D weights GPTQ quantizes: every Linear inside the repeated blocks."""
    return [t for t in shapes.tensors
            if t.name.endswith(".weight") and len(t.shape) == 2 and LAYER_BLOCK.search(t.name)
            and not NOT_GPTQ.search(t.name)]


@dataclass(frozen=True)
class ShapeProblem:
    """A rule a tensor breaks, in words that name both."""

    tensor: str
    rule: str

    def __str__(self) -> str:
        return f"{self.tensor} {self.rule}"


def gptq_problems(shapes: ModelShapes, bits: int, group_size: int) -> list[ShapeProblem]:
    """Why GPTQ `bits`/`group_size` cannot be run and served on this machine's CPU kernels (empty: it can)."""
    allowed = KERNEL_GROUP_SIZES.get(bits, ())
    if group_size not in allowed:
        return [ShapeProblem("the model", f"cannot use group size {group_size}: {KERNEL_NAMES.get(bits, 'GPTQ')} "
                                          f"accepts {', '.join(map(str, allowed))}")]
    if bits != 4:
        return []
    problems = []
    for t in gptq_linears(shapes):
        out_features, in_features = t.shape
        if in_features % group_size:
            problems.append(ShapeProblem(t.name, f"has {in_features} input columns, not a multiple of group size "
                                                 f"{group_size}"))
        elif out_features % INT4_CPU_OUT_MULTIPLE:
            problems.append(ShapeProblem(t.name, f"has {out_features} output rows, not a multiple of "
                                                 f"{INT4_CPU_OUT_MULTIPLE} (the CPU 4-bit kernel's packing)"))
    return problems


def gptq_working_group_size(shapes: ModelShapes, bits: int) -> Optional[int]:
    """The largest offered group size every quantized Linear allows, or None."""
    return next((g for g in GPTQ_GROUP_SIZES if not gptq_problems(shapes, bits, g)), None)


def gptq_bytes(shapes: ModelShapes, bits: int, group_size: int) -> int:
    """Bytes of GPTQModel's safetensors: packed weights, and per group a packed zero and an fp16 scale.

    Per Linear (K inputs, N outputs, G = ceil(K / group) groups): qweight K*N*bits/8, qzeros G*N*bits/8,
    scales G*N*2, g_idx K*4; what stays unquantized (embeddings, head, norms) is saved in bfloat16.
    """
    quantized = {t.name for t in gptq_linears(shapes)}
    total = 0
    for t in shapes.tensors:
        if t.name in quantized:
            n, k = t.shape
            groups = -(-k // group_size)
            total += k * n * bits // 8 + groups * n * bits // 8 + groups * n * 2 + k * 4
        else:
            total += t.numel * min(DTYPE_BYTES.get(t.dtype, 4), 2)
    return total
