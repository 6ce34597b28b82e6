"""What the planner knows of a source model, read from its files: format, level, parameters, weight bytes.

A module of its own because the plan and the per-kind rules it applies (agents.quantization.encoder) both read
these facts; neither imports the other for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lqmf.base.source import hf_parameter_count, hf_weight_bytes


@dataclass
class SourceFacts:
    """The source model as read from its files."""

    name: str
    path: Path
    format: str  # hf | gguf | gptq | bnb | unknown
    level: Optional[str]
    parameter_count: int
    weight_bytes: int
    architecture: Optional[str]
    model_type: Optional[str]
    usable: bool = True
    reason: str = ""


def source_facts(record) -> SourceFacts:
    """Facts about a discovered model (a server.runtime.discovery.ModelRecord) needed to plan from it."""
    path = Path(record.path)
    model_type = None
    if path.is_dir():
        config = path / "config.json"
        if config.is_file():
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        params = record.parameter_count or (hf_parameter_count(path) if any(path.glob("*.safetensors")) else 0)
        weight_bytes = hf_weight_bytes(path)
    else:
        params = record.parameter_count or 0
        weight_bytes = path.stat().st_size
    return SourceFacts(record.name, path, record.format, record.level, int(params), weight_bytes,
                       record.architecture, model_type, record.usable, record.reason)
