"""Process environment quirks the project sets itself so that users never have to."""

from __future__ import annotations

import os
import sys

# Seconds a Python thread may hold the GIL while another waits (CPython's default is 5 ms).
GIL_SWITCH_INTERVAL_S = 1e-4


def apply_environment_quirks() -> None:
    """Set library environment variables that must be in place before those libraries import."""
    cpus = os.cpu_count() or 1
    # GPTQModel's loader asks for a 2-worker CPU pool; with its default of (cpus+1)//2 workers a
    # 2-core machine fails with "Virtual pool 'model_loader:cpu' requests 2 workers ...".
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, (cpus + 1) // 2)))
    # The tokenizers library forks worker threads that deadlock after fork in our subprocesses.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Nothing here is allowed to phone home; downloads are explicit and go through huggingface_hub.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Library tqdm bars would draw over the shell's own progress bars (downloads report through a callback).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # torch's own deprecation warnings (printed while bitsandbytes/transformers import) are not
    # the user's to fix; errors still show.
    os.environ.setdefault("TORCH_LOGS", "-all")
    # A streamed token crosses threads (model worker -> consumer). With the default 5 ms interval
    # the consumer often waits for the worker's Python code between C calls; 0.1 ms took the
    # manager's streaming from 0.91x to 0.97x of llama-cpp-python's bare loop (benchmarks/).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
