"""Process environment quirks the project sets itself so that users never have to."""

from __future__ import annotations

import os


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
