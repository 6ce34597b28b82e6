"""Write a per-tensor mix with llama-quantize's --tensor-type-file, and check the file holds exactly that mix."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Optional

from lqmf.base.errors import QuantizationError
from lqmf.base.processes import exit_words, run_child_captured
from lqmf.base.tools import LlamaTools

log = logging.getLogger(__name__)

# The quantizer's default type; every quantizable tensor is named in the file, so it only has to be a
# quantized type (llama-quantize applies --tensor-type overrides only then).
DEFAULT_TYPE = "Q8_0"


def type_file_text(types: Mapping[str, str]) -> str:
    """One anchored pattern per tensor (llama-quantize matches by regex search: blk.1. would also match blk.10.)."""
    return "\n".join(f"^{re.escape(name)}$={ggml_type.lower()}" for name, ggml_type in types.items()) + "\n"


def write_mix(tools: LlamaTools, f16_gguf: Path, out: Path, types: Mapping[str, str], *,
              imatrix: Optional[Path] = None, threads: int = 1) -> None:
    """llama-quantize `f16_gguf` into `out` with each named tensor at its type; raise when any tensor differs."""
    from gguf import GGUFReader

    spec = out.with_name(out.name + ".types")
    spec.write_text(type_file_text(types), encoding="utf-8")
    cmd = [str(tools.quantize), "--tensor-type-file", str(spec)]
    if imatrix is not None:
        cmd += ["--imatrix", str(imatrix)]
    cmd += [str(f16_gguf), str(out), DEFAULT_TYPE, str(threads)]
    try:
        code, output = run_child_captured(cmd)
    finally:
        spec.unlink(missing_ok=True)
    if code != 0 or not out.is_file():
        tail = "\n".join(output.strip().splitlines()[-6:])
        raise QuantizationError(f"llama-quantize could not write the mix ({exit_words(code)}):\n{tail}",
                                "see logs/lqmf.log; is the source a complete float GGUF?")
    written = {t.name: t.tensor_type.name for t in GGUFReader(str(out)).tensors if t.name in types}
    wrong = {n: (types[n], written.get(n)) for n in types if written.get(n, "").upper() != types[n].upper()}
    if wrong:
        out.unlink(missing_ok=True)
        sample = ", ".join(f"{n}: asked {a}, wrote {b}" for n, (a, b) in list(wrong.items())[:4])
        raise QuantizationError(f"llama-quantize wrote {len(wrong)} tensors in other types than asked ({sample})",
                                "report this: the search offers only types whose blocks fit each tensor")
