"""Facts about a source Hugging Face folder, read from its files without loading weights."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from lqmf.base.errors import ModelNotFound, QuantizationError

# Bytes per element of each safetensors dtype.
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def require_hf_folder(src: Path) -> dict:
    """Return config.json of an HF model folder, or raise a clear error."""
    if not src.is_dir():
        raise ModelNotFound(f"no model folder at {src}", "give the path of a Hugging Face model folder")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise QuantizationError(f"{src} has no config.json", "point at a Hugging Face model folder")
    if not any(src.glob("*.safetensors")):
        raise QuantizationError(
            f"{src} has no .safetensors weights", "save the model with safe_serialization=True"
        )
    return json.loads(config_path.read_text(encoding="utf-8"))


def safetensors_headers(src: Path):
    """The JSON header of each safetensors file in a folder, in name order."""
    for file in sorted(src.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            yield json.loads(handle.read(header_len))


def hf_parameter_count(src: Path) -> int:
    """Number of parameters stored in a folder's safetensors files."""
    return sum(
        math.prod(info["shape"])
        for header in safetensors_headers(src)
        for name, info in header.items()
        if name != "__metadata__"
    )


def hf_weight_bytes(src: Path) -> int:
    """Bytes of the folder's safetensors files."""
    return sum(f.stat().st_size for f in src.glob("*.safetensors"))


def architecture(config: dict) -> str:
    archs = config.get("architectures") or ["unknown"]
    return str(archs[0])
