"""Backends: one interface over llama-cpp-python (GGUF) and transformers (HF, bitsandbytes, GPTQ)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from server.backends.base import Backend
    from server.discovery import ModelRecord


def backend_for(record: "ModelRecord", **options) -> "Backend":
    """The backend class for a discovered model's format (not loaded yet)."""
    from server.backends.gguf import GGUFBackend
    from server.backends.transformers_backend import TransformersBackend

    table: dict[str, Callable[..., "Backend"]] = {
        "gguf": GGUFBackend,
        "hf": TransformersBackend,
        "bnb": TransformersBackend,
        "gptq": TransformersBackend,
    }
    if record.format not in table:
        from lqmf.errors import ModelLoadError

        raise ModelLoadError(f"no backend for format {record.format!r} ({record.name})", "see `list models`")
    return table[record.format](record, **options)
