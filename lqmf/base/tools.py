"""Where llama.cpp's built programs live: llama-imatrix, llama-quantize, llama-perplexity and llama-server.

The factory builds them (agents.quantization.llama_tools) and the server runtime runs llama-server
(server.runtime.engine); both find them here, so the runtime need not import the factory. llama-perplexity is
llama.cpp's own KL-divergence yardstick (agents.measure.llama_perplexity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lqmf.base.errors import ToolUnavailable
from lqmf.base.settings import Settings

IMATRIX = "llama-imatrix"
QUANTIZE = "llama-quantize"
SERVER = "llama-server"
PERPLEXITY = "llama-perplexity"
TARGETS = (IMATRIX, QUANTIZE, SERVER, PERPLEXITY)


@dataclass(frozen=True)
class LlamaTools:
    """The built executables (and the folder that holds them with their libraries)."""

    folder: Path
    imatrix: Path
    quantize: Path
    server: Path
    perplexity: Path

    @classmethod
    def in_folder(cls, folder: Path) -> "LlamaTools":
        """The programs' paths in `folder`, built or not."""
        return cls(folder, folder / IMATRIX, folder / QUANTIZE, folder / SERVER, folder / PERPLEXITY)

    def ready(self) -> bool:
        """True when every program is there and executable (a folder built before one was added is not)."""
        programs = (self.imatrix, self.quantize, self.server, self.perplexity)
        return all(p.is_file() and os.access(p, os.X_OK) for p in programs)


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (the tools and the converter are built from its sdist)."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise ToolUnavailable("llama-cpp-python is not installed", "run `make setup`") from exc


def tools_folder(settings: Settings) -> Path:
    """The folder the programs of the installed llama-cpp-python version are built into."""
    return settings.tools_dir / f"llama.cpp-tools-{llama_cpp_version()}"
