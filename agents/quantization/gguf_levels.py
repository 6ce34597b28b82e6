"""The GGUF quantization levels LQMF offers: llama.cpp's types, their nominal bits and main tensor types.

Plain facts, read by the quantizer (gguf_quant), the size prediction (gguf_mix), the planner and the encoder
rules alike; a module of its own so that none of them imports another for a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

K_TYPES = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"})
# IQ types with 256-wide blocks. IQ4_NL (32-wide) is absent on purpose: llama.cpp sends IQ tensors
# whose rows are not divisible by 256 there, so it is a fallback unless the level asks for it.
IQ_TYPES = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"})


@dataclass(frozen=True)
class GGUFLevel:
    """One llama.cpp quantization type (a llama.h LLAMA_FTYPE)."""

    name: str  # lower-case, as users type it: q4_k_m
    ftype: str  # llama_cpp constant
    nominal_bits: float  # llama.cpp's documented bits per weight, used for estimates only
    main_type: str  # the ggml type most weight matrices get (llama_ftype_get_default_type)
    needs_imatrix: bool = False  # llama-quantize refuses this level without an importance matrix

    @property
    def bits(self) -> int:
        """The bit class users name it by: 4 for q4_k_m and iq4_xs."""
        return int(re.search(r"\d", self.name).group())

    @property
    def is_k_quant(self) -> bool:
        return self.main_type in K_TYPES

    @property
    def is_iq(self) -> bool:
        return self.name.startswith("iq")


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
        # IQ types: bpw from llama-quantize's own list. The ones whose main type is IQ3_XXS, IQ2_* or
        # IQ1_* are refused by llama.cpp without an importance matrix (tensor_requires_imatrix).
        GGUFLevel("iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL", 4.5, "IQ4_NL"),
        GGUFLevel("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25, "IQ4_XS"),
        GGUFLevel("iq3_m", "LLAMA_FTYPE_MOSTLY_IQ3_M", 3.66, "IQ3_S"),
        GGUFLevel("iq3_s", "LLAMA_FTYPE_MOSTLY_IQ3_S", 3.44, "IQ3_S"),
        GGUFLevel("iq3_xxs", "LLAMA_FTYPE_MOSTLY_IQ3_XXS", 3.06, "IQ3_XXS", needs_imatrix=True),
        GGUFLevel("iq2_m", "LLAMA_FTYPE_MOSTLY_IQ2_M", 2.7, "IQ2_S", needs_imatrix=True),
        GGUFLevel("iq2_s", "LLAMA_FTYPE_MOSTLY_IQ2_S", 2.5, "IQ2_XS", needs_imatrix=True),
        GGUFLevel("iq2_xs", "LLAMA_FTYPE_MOSTLY_IQ2_XS", 2.31, "IQ2_XS", needs_imatrix=True),
        GGUFLevel("iq2_xxs", "LLAMA_FTYPE_MOSTLY_IQ2_XXS", 2.06, "IQ2_XXS", needs_imatrix=True),
        GGUFLevel("iq1_m", "LLAMA_FTYPE_MOSTLY_IQ1_M", 1.75, "IQ1_M", needs_imatrix=True),
        GGUFLevel("iq1_s", "LLAMA_FTYPE_MOSTLY_IQ1_S", 1.56, "IQ1_S", needs_imatrix=True),
    )
}
FLOAT_BITS = {"f32": 32.0, "f16": 16.0, "bf16": 16.0}
