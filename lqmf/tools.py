"""Where llama.cpp's built programs live: llama-imatrix, llama-quantize and llama-server.

The factory builds them (agents.quantization.llama_tools) and the server runtime runs llama-server
(server.engine); both find them here, so the runtime need not import the factory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lqmf.errors import ToolUnavailable
from lqmf.settings import Settings

IMATRIX = "llama-imatrix"
QUANTIZE = "llama-quantize"
SERVER = "llama-server"
TARGETS = (IMATRIX, QUANTIZE, SERVER)


@dataclass(frozen=True)
class LlamaTools:
    """The built executables (and the folder that holds them with their libraries)."""

    folder: Path
    imatrix: Path
    quantize: Path
    server: Path

    @classmethod
    def in_folder(cls, folder: Path) -> "LlamaTools":
        """The programs' paths in `folder`, built or not."""
        return cls(folder, folder / IMATRIX, folder / QUANTIZE, folder / SERVER)

    def ready(self) -> bool:
        """True when every program is there and executable."""
        return all(p.is_file() and os.access(p, os.X_OK) for p in (self.imatrix, self.quantize, self.server))


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (the tools and the converter are built from its sdist)."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise ToolUnavailable("llama-cpp-python is not installed", "run `make setup`") from exc


def tools_folder(settings: Settings) -> Path:
    """The folder the programs of the installed llama-cpp-python version are built into."""
    return settings.tools_dir / f"llama.cpp-tools-{llama_cpp_version()}"
