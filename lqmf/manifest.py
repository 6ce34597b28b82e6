"""Manifests: what every output records about how it was made, and the measurements behind it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

from lqmf.source import safetensors_headers
from lqmf.version import __version__

MANIFEST_NAME = "lqmf.json"
MANIFEST_SUFFIX = ".lqmf.json"
MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")

REQUIRED_KEYS = (
    "manifest_version", "name", "format", "method", "bits", "level", "source", "tool_versions",
    "created_at", "size_bytes", "parameter_count", "bits_per_weight", "weight_files",
    "wall_time_s", "peak_rss_bytes",
)


@dataclass(frozen=True)
class WeightFile:
    """One weight file of an output, as it is on disk."""

    path: str
    size_bytes: int
    sha256: str


@dataclass
class Manifest:
    """The record written next to (`<file>.lqmf.json`) or inside (`lqmf.json`) every output."""

    name: str
    format: str  # gguf | gptq | bnb | hf
    method: str  # train | convert | llama.cpp-quantize | gptq | bitsandbytes
    bits: float
    level: str
    source: dict[str, Any]
    tool_versions: dict[str, str]
    size_bytes: int
    parameter_count: int
    bits_per_weight: float
    weight_files: list[WeightFile]
    wall_time_s: float
    peak_rss_bytes: int
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    tensor_types: dict[str, int] = field(default_factory=dict)
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def manifest_path_for(output: Path) -> Path:
    """Where the manifest of an output lives: inside a folder, beside a file."""
    return output / MANIFEST_NAME if output.is_dir() else output.with_name(output.name + MANIFEST_SUFFIX)


def read_manifest(output: Path) -> Optional[dict[str, Any]]:
    """The manifest of an output as a dict, or None when it has none."""
    path = manifest_path_for(output)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """A content hash of a file, or of a folder's files by relative path (manifests excluded)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def weight_files(output: Path) -> list[WeightFile]:
    """Every weight file of an output with its size and hash, paths relative to the output."""
    if output.is_file():
        files = [output]
        base = output.parent
    else:
        files = sorted(p for p in output.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        base = output
    return [WeightFile(f.relative_to(base).as_posix(), f.stat().st_size, sha256_file(f)) for f in files]


def safetensors_dtypes(folder: Path) -> dict[str, int]:
    """Histogram of tensor dtypes over a folder's safetensors files (read from their headers)."""
    counts: dict[str, int] = {}
    for header in safetensors_headers(folder):
        for name, info in header.items():
            if name != "__metadata__":
                counts[info["dtype"]] = counts.get(info["dtype"], 0) + 1
    return dict(sorted(counts.items()))


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of the named distributions (and LQMF's own)."""
    versions = {"lqmf": __version__}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class RunMeasure:
    """Wall time and peak resident memory (this process plus its children) of one run."""

    wall_time_s: float = 0.0
    peak_rss_bytes: int = 0


def process_rss() -> int:
    """Resident memory of this process and its children now (what a run's peak counts)."""
    import psutil

    proc = psutil.Process()
    total = proc.memory_info().rss
    own = proc.cmdline()
    for child in proc.children(recursive=True):
        try:
            # Between fork and exec a child is this process's copy: its resident pages are ours, shared, and
            # counting them would double the peak for that moment. Once it runs its own program, it counts.
            if child.cmdline() == own:
                continue
            total += child.memory_info().rss
        except psutil.Error:  # a child that ended between the listing and the look
            pass
    return total


@contextmanager
def measure_run(interval_s: float = 0.02) -> Iterator[RunMeasure]:
    """Measure wall time and peak RSS, sampled every `interval_s`, of the body (children included)."""
    result = RunMeasure()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result.peak_rss_bytes = max(result.peak_rss_bytes, process_rss())
            stop.wait(interval_s)

    sampler = threading.Thread(target=sample, name="lqmf-rss-sampler", daemon=True)
    start = time.perf_counter()
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result.peak_rss_bytes = max(result.peak_rss_bytes, process_rss())
        result.wall_time_s = time.perf_counter() - start
