"""The memory budget for local models: what a model will need, what the budget is, and making room for a load."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from lqmf.base.errors import InsufficientMemory
from lqmf.base.settings import Settings
from lqmf.base.units import plural
from server.runtime.discovery import ModelRecord
from server.runtime.jobs import LoadedModel

log = logging.getLogger(__name__)

MiB = 2**20


def estimate_bytes(record: ModelRecord, n_ctx: int) -> int:
    """Memory a model will need: its weights, a KV cache for the context, and compute buffers."""
    weights = record.size_bytes
    if record.format == "hf" and record.bits == 16.0:
        weights *= 2  # a 16-bit HF checkpoint loads as float32 on CPU
    cache_bytes = 2 if record.format == "gguf" else 4  # llama.cpp keeps an f16 cache; torch f32
    kv = 2 * (record.block_count or 32) * n_ctx * (record.kv_width or 4096) * cache_bytes
    return int(weights + kv + 32 * MiB)


class MemoryBudget:
    """Admission of local loads against LQMF_MAX_MEMORY_MB and LQMF_MAX_MODELS, evicting idle models (LRU) to fit.

    It counts the loader's loaded set (`loaded`, guarded by the loader's `lock`) plus the loads it has
    reserved room for; `evict` unloads a model (the loader's unload).
    """

    def __init__(self, settings: Settings, lock: threading.RLock, loaded: dict[str, LoadedModel],
                 evict: Callable[[str], bool]) -> None:
        self.settings = settings
        self._lock = lock
        self._loaded = loaded
        self._evict = evict
        # Estimated bytes of loads in flight: counted as held, so concurrent loads cannot overshoot the budget.
        self._reserved: dict[str, int] = {}

    def limit_bytes(self) -> int:
        """The memory budget: the configured maximum, capped by what is available plus what we hold."""
        import psutil

        with self._lock:
            held = sum(m.footprint_bytes for m in self._loaded.values())
        return min(self.settings.max_memory_mb * MiB, psutil.virtual_memory().available + held)

    def reserve(self, name: str, need: int) -> None:
        """Evict least-recently-used idle models until `need` fits, then hold it for `name` until release();
        refuse with the numbers if it cannot fit."""
        budget = self.limit_bytes()
        if need > budget:
            raise InsufficientMemory(
                f"{name} needs about {need / MiB:.0f} MiB (weights + KV cache for the context) but the "
                f"memory budget is {budget / MiB:.0f} MiB",
                "raise LQMF_MAX_MEMORY_MB, lower LQMF_CONTEXT_LENGTH, or use a smaller quantization",
            )
        while True:
            with self._lock:
                loading = {n: b for n, b in self._reserved.items() if n != name}
                local = {n: m for n, m in self._loaded.items() if m.record.format != "remote"}
                held = sum(m.footprint_bytes for m in local.values()) + sum(loading.values())
                too_many = len(local) + len(loading) >= self.settings.max_models
                if held + need <= budget and not too_many:
                    self._reserved[name] = need
                    return
                idle = sorted((m for m in local.values() if not m.busy), key=lambda m: m.last_used)
                if not idle:
                    busy = ", ".join([*local, *(f"{n} (loading)" for n in loading)]) or "none"
                    reason = (
                        f"{plural(len(local), 'model')} loaded (the maximum is {self.settings.max_models})"
                        if too_many else
                        f"{name} needs about {need / MiB:.0f} MiB, {held / MiB:.0f} of the {budget / MiB:.0f} MiB "
                        f"budget are held"
                    )
                    raise InsufficientMemory(
                        f"cannot load {name}: {reason}, and every loaded model is busy ({busy})",
                        "retry when a request finishes, or unload a model",
                    )
                victim = idle[0]
            log.info("evicting %s (least recently used, idle) to load %s", victim.name, name)
            self._evict(victim.name)

    def release(self, name: str) -> None:
        """The load of `name` has ended (loaded, so counted in the loaded set now, or failed)."""
        with self._lock:
            self._reserved.pop(name, None)
