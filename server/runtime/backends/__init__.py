"""Backends: one interface over llama-cpp-python (GGUF) and transformers (HF, bitsandbytes, GPTQ)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from pathlib import Path

    from server.runtime.backends.base import Backend
    from server.runtime.discovery import ModelRecord
    from server.runtime.engine import EngineChoice


def backend_for(record: "ModelRecord", *, engine: "Optional[EngineChoice]" = None, slots: int = 1,
                logs_dir: "Optional[Path]" = None, tuned_args: tuple[str, ...] = (), **options) -> "Backend":
    """The backend class for a discovered model's format (not loaded yet).

    GGUF goes to a llama-server child with `slots` parallel slots when `engine` is the server
    engine, else in-process; `tuned_args` are the model's tuned llama-server arguments (server.runtime.engine_tuning).
    """
    from server.runtime.backends.gguf import GGUFBackend
    from server.runtime.backends.transformers_backend import TransformersBackend

    if record.format == "gguf" and engine is not None:
        # How llama.cpp may run in this process here (embeddings and the in-process engine load weights).
        options.update(repack=engine.repack, inprocess_refusal=engine.inprocess_refusal)
    if record.format == "gguf" and engine is not None and engine.server:
        from server.runtime.backends.gguf_engine import EngineBackend
        from server.runtime.engine import engine_log_path

        return EngineBackend(record, binary=engine.binary, slots=slots, server_args=engine.server_args + tuned_args,
                             log_path=engine_log_path(logs_dir, record.name), **options)

    table: dict[str, Callable[..., "Backend"]] = {
        "gguf": GGUFBackend,
        "hf": TransformersBackend,
        "bnb": TransformersBackend,
        "gptq": TransformersBackend,
    }
    if record.format not in table:
        from lqmf.base.errors import ModelLoadError

        raise ModelLoadError(f"no backend for format {record.format!r} ({record.name})", "see `list models`")
    return table[record.format](record, **options)
