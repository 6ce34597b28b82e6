"""Manifests: what every output records about how it was made, and the measurements behind it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

from lqmf.base.files import write_text_atomic
from lqmf.base.source import DTYPE_BYTES, safetensors_headers
from lqmf.base.version import __version__

MANIFEST_NAME = "lqmf.json"
MANIFEST_SUFFIX = ".lqmf.json"
MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")

REQUIRED_KEYS = (
    "manifest_version", "name", "format", "method", "bits", "level", "source", "tool_versions",
    "created_at", "size_bytes", "parameter_count", "bits_per_weight", "weight_files",
    "wall_time_s", "peak_rss_bytes",
)
# A lineage entry (the source, the importance matrix) whose path lies in the folder holding the output is stored
# relative to that folder -- the models folder -- and marked so: a copied or moved models folder keeps its lineage.
RELATIVE_TO = "relative_to"
MODELS_FOLDER = "models folder"


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

    def to_json(self, home: Optional[Path] = None) -> str:
        """The manifest as written; with `home` (the folder the output lives in), lineage inside it is relative."""
        data = asdict(self)
        return json.dumps(portable(data, home) if home is not None else data, indent=2, sort_keys=True)


def manifest_path_for(output: Path) -> Path:
    """Where the manifest of an output lives: inside a folder, beside a file."""
    return output / MANIFEST_NAME if output.is_dir() else output.with_name(output.name + MANIFEST_SUFFIX)


def read_manifest(output: Path) -> Optional[dict[str, Any]]:
    """The manifest of an output as a dict, or None when it has none; its lineage paths are absolute, in the
    folder the output lives in now (where a copied or moved models folder has them)."""
    path = manifest_path_for(output)
    if not path.is_file():
        return None
    return resolved(json.loads(path.read_text(encoding="utf-8")), Path(output).parent, Path(output))


def write_manifest(output: Path, data: dict[str, Any]) -> None:
    """Write an output's manifest whole (atomically), its lineage relative to the folder the output lives in."""
    output = Path(output)
    write_text_atomic(manifest_path_for(output), json.dumps(portable(data, output.parent), indent=2, sort_keys=True))


def _lineage(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a manifest that name another file by path: its source, its importance matrix."""
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    entries = [data.get("source"), details.get("imatrix")]
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"]]


def _inside(path: Path, home: Path) -> Optional[str]:
    """`path` relative to `home` (POSIX form) when it lies inside it, else None."""
    for a, b in ((path, home), (Path(os.path.realpath(path)), Path(os.path.realpath(home)))):
        try:
            rel = a.relative_to(b)
        except ValueError:
            continue
        return rel.as_posix() if rel.parts else None
    return None


def portable(data: dict[str, Any], home: Path) -> dict[str, Any]:
    """A copy of a manifest whose lineage paths inside `home` are stored relative to it (and marked so)."""
    data = json.loads(json.dumps(data))
    for entry in _lineage(data):
        path = Path(entry["path"])
        rel = _inside(path, Path(home)) if path.is_absolute() else None
        if rel is not None:
            entry["path"], entry[RELATIVE_TO] = rel, MODELS_FOLDER
    return data


def resolved(data: dict[str, Any], home: Path, own: Optional[Path] = None) -> dict[str, Any]:
    """A manifest as read: lineage paths made absolute in `home`, the folder the output `own` lives in now.

    A relative path (this format) is joined to `home`. An absolute one (manifests written before) is kept, unless
    it lies in another folder and `home` holds the same name: a copied models folder points at its own files.
    """
    home = Path(home)
    for entry in _lineage(data):
        path = Path(entry["path"])
        if entry.pop(RELATIVE_TO, None) == MODELS_FOLDER and not path.is_absolute():
            entry["path"] = str(home / path)
        elif path.is_absolute() and _inside(path, home) is None:
            # The same name here (a model), or the same last two (an importance matrix in .imatrix/).
            for here in (home / Path(*path.parts[-k:]) for k in (1, 2) if len(path.parts) > k):
                if here.exists() and (own is None or here != own):
                    entry["path"] = str(here)
                    break
    return data


# -- where the bits go ---------------------------------------------------------------------------------------
Tensors = dict[str, tuple[str, list[int]]]  # name -> (dtype, shape), from safetensors headers


def _gptq(tensors: Tensors, prefix: str, bits: Optional[int]) -> Optional[int]:
    # g_idx holds one entry per input feature and scales one column per output feature.
    g_idx, scales = tensors.get(f"{prefix}.g_idx"), tensors.get(f"{prefix}.scales")
    if g_idx and scales:
        return g_idx[1][0] * scales[1][-1]
    rows, cols = tensors[f"{prefix}.qweight"][1]
    return rows * cols * 32 // bits if bits else None  # int32 words, 32 / bits weights each


def _bnb_4bit(tensors: Tensors, prefix: str, bits: Optional[int]) -> Optional[int]:
    weight = tensors.get(f"{prefix}.weight")
    return 2 * math.prod(weight[1]) if weight else None  # two 4-bit weights a byte


def _bnb_int8(tensors: Tensors, prefix: str, bits: Optional[int]) -> Optional[int]:
    weight = tensors.get(f"{prefix}.weight")
    return math.prod(weight[1]) if weight else None


# What marks a quantized layer in a safetensors file (GPTQ, bitsandbytes 4-bit, LLM.int8), and how many weights
# the layer stands for.
QUANTIZED_MARKERS = {".qweight": _gptq, ".weight.absmax": _bnb_4bit, ".SCB": _bnb_int8}
KEPT_WORDS = (("embed", "embeddings"), ("lm_head", "output head"), ("output.", "output head"), ("norm", "norms"))


@dataclass(frozen=True)
class WeightSplit:
    """Where an output's bits go: its quantized layers, and the tensors kept in floating point."""

    quantized_parameters: int
    quantized_bytes: int
    kept_parameters: int
    kept_bytes: int
    kept: tuple[str, ...]  # what the kept tensors are, in words, largest first: ("embeddings", "output head")

    @property
    def quantized_bits_per_weight(self) -> float:
        """Bits per weight over the quantized layers alone (their scales and zero points included)."""
        return self.quantized_bytes * 8 / self.quantized_parameters

    @property
    def kept_bits_per_weight(self) -> float:
        """Bits per weight of the tensors kept in floating point (16 for BF16)."""
        return self.kept_bytes * 8 / self.kept_parameters if self.kept_parameters else 0.0

    def to_dict(self) -> dict[str, Any]:
        """As a manifest stores it (`weights`)."""
        return {**asdict(self), "kept": list(self.kept),
                "quantized_bits_per_weight": round(self.quantized_bits_per_weight, 4),
                "kept_bits_per_weight": round(self.kept_bits_per_weight, 4)}


def weight_split(output: Path) -> Optional[WeightSplit]:
    """The quantized layers and the kept tensors of a safetensors folder, from its headers (no weights read);
    None for a file, or a folder with no quantized layer."""
    output = Path(output)
    if not output.is_dir():
        return None
    try:
        tensors: Tensors = {name: (info["dtype"], info["shape"]) for header in safetensors_headers(output)
                            for name, info in header.items() if name != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, struct.error):  # a damaged file: no split, not a failure
        return None
    try:
        config = json.loads((output / "config.json").read_text(encoding="utf-8"))
        bits = (config.get("quantization_config") or {}).get("bits")
    except (OSError, ValueError, AttributeError):
        bits = None
    layers: dict[str, int] = {}
    for name in tensors:
        for marker, count in QUANTIZED_MARKERS.items():
            if name.endswith(marker):
                prefix = name[:-len(marker)]
                weights = count(tensors, prefix, bits)
                if weights:
                    layers[prefix] = weights
    if not layers:
        return None
    quantized_bytes = kept_bytes = kept_params = 0
    kept: dict[str, int] = {}
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BYTES.get(dtype, 0)
        if any(name.startswith(prefix + ".") for prefix in layers):
            quantized_bytes += size
            continue
        kept_bytes += size
        kept_params += math.prod(shape)
        words = next((w for key, w in KEPT_WORDS if key in name), "other tensors")
        kept[words] = kept.get(words, 0) + math.prod(shape)
    # Only what holds a visible share of the kept weights is named (norms are a rounding error).
    named = tuple(w for w, n in sorted(kept.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 0.01 * kept_params)
    return WeightSplit(sum(layers.values()), quantized_bytes, kept_params, kept_bytes, named)


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


def bits_per_weight_words(bits_per_weight: float, weights: Optional[dict[str, Any]] = None,
                          lead: str = "bits per weight") -> str:
    """A measured bits per weight with what it counts: all weights, and the quantized layers where some are kept
    in float ("7.04 bits per weight over all weights (embeddings and output head kept at 16 bit); 4.24 over the
    quantized layers"). `lead` is the words after the figure."""
    if not weights or not weights.get("quantized_parameters"):
        return f"{bits_per_weight:.2f} {lead} over all weights (embeddings and output head included)"
    kept = " and ".join(weights.get("kept") or ["some tensors"])
    return (f"{bits_per_weight:.2f} {lead} over all weights ({kept} kept at "
            f"{weights.get('kept_bits_per_weight', 0):g} bit); {weights['quantized_bits_per_weight']:.2f} over the "
            "quantized layers")
