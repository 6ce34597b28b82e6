"""What a download or an import places in the models folder, and the names an entry there may take."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lqmf.base.errors import LQMFError
from lqmf.base.manifest import MANIFEST_SUFFIX

DISK_MARGIN_BYTES = 16 << 20  # free space kept beyond the model's own bytes


@dataclass
class Acquired:
    """A model placed in the models folder by a download or an import."""

    name: str
    path: Path
    format: str  # hf | gguf (a pre-quantized folder: what discovery reads, e.g. gptq)
    source: str  # repo id, or the original absolute path
    revision: Optional[str]  # commit sha for downloads
    files: int
    size_bytes: int
    wall_time_s: float
    already_present: bool = False
    warnings: list[str] = field(default_factory=list)


def check_name(name: str) -> str:
    """A model name that is one visible entry of the models folder."""
    name = name.strip()
    if not name or name.startswith(".") or "/" in name or "\\" in name or name.endswith(MANIFEST_SUFFIX):
        raise LQMFError(f"{name!r} cannot be a model name",
                        "use letters, digits, '-', '_' and '.', not starting with '.'")
    return name

