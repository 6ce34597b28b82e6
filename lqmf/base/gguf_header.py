"""A GGUF file's header, parsed directly: its scalar metadata, tensor infos and where the tensor data starts.

Shared by discovery (what `list models` shows) and the factory's shape plans. gguf.GGUFReader builds a numpy view
per vocabulary entry: 3 s for SmolLM2's 49k tokens, where this takes milliseconds.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tensor:
    """One stored tensor. `shape` is row-major (torch's order): a Linear weight is (out_features, in_features)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype (F16, BF16, F32, ...) or GGUF type name (F16, Q4_K, ...)

    @property
    def columns(self) -> int:
        """The row width: a Linear's input features, llama.cpp's ne[0] (what block sizes must divide)."""
        return self.shape[-1] if self.shape else 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def n_dims(self) -> int:
        """Dimensions, trailing 1s of llama.cpp's order (leading ones here) not counted, as ggml_n_dims does."""
        dims = list(self.shape)
        while len(dims) > 1 and dims[0] == 1:
            dims.pop(0)
        return len(dims)


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's scalar metadata (arrays are skipped), its tensor infos and where the tensor data starts."""

    metadata: dict
    tensors: tuple[Tensor, ...]
    data_offset: int
    data_bytes: int = 0  # where the last tensor's data ends, from data_offset: a shorter file is truncated


# GGUF value types: struct formats of the scalars; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_header(file: Path) -> GGUFHeader:
    """Parse a GGUF header, skipping the arrays (the vocabulary) nobody here reads; ValueError when it is not one."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # type names as gguf-py and the manifests say them

    with open(file, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"GGUF":
            raise ValueError(f"{file} is not a GGUF file")
        pos = 8
        n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
        pos += 16

        def string(at: int) -> tuple[str, int]:
            (length,) = struct.unpack_from("<Q", data, at)
            return bytes(data[at + 8: at + 8 + length]).decode("utf-8", "replace"), at + 8 + length

        def skip(kind: int, at: int) -> int:
            if kind == 8:
                return at + 8 + struct.unpack_from("<Q", data, at)[0]
            if kind == 9:
                item, count = struct.unpack_from("<IQ", data, at)
                at += 12
                if item in _SCALARS:
                    return at + count * struct.calcsize(_SCALARS[item])
                for _ in range(count):
                    at = skip(item, at)
                return at
            return at + struct.calcsize(_SCALARS[kind])

        metadata: dict = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (kind,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if kind == 8:
                metadata[key], pos = string(pos)
            elif kind in _SCALARS:
                (metadata[key],) = struct.unpack_from(_SCALARS[kind], data, pos)
                pos = skip(kind, pos)
            else:
                pos = skip(kind, pos)
        tensors, data_bytes = [], 0
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", data, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", data, pos + 4)
            ggml_type, offset = struct.unpack_from("<IQ", data, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            # GGUF dims are llama.cpp's ne order (columns first): reversed here to torch's order.
            kind = GGMLQuantizationType(ggml_type)
            tensors.append(Tensor(name, tuple(int(d) for d in reversed(dims)), kind.name))
            block, block_bytes = GGML_QUANT_SIZES[kind]
            data_bytes = max(data_bytes, offset + math.prod(dims) // block * block_bytes)
        alignment = int(metadata.get("general.alignment") or 32)
        return GGUFHeader(metadata, tuple(tensors), -(-pos // alignment) * alignment, data_bytes)
