"""Find models in the models folder; the format comes from file evidence, never from names."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from lqmf.base.atomic import is_temp_name
from lqmf.base.encoders import GENERATION, MODULES_FILE, gguf_role, hf_role
from lqmf.base.gguf_header import read_gguf_header
from lqmf.base.manifest import MANIFEST_SUFFIX, read_manifest

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# The brief's naming convention, parsed for display only: <org>_<model>_<method>_<bits>bit.
BRIEF_NAME = re.compile(r"^(?P<org>[^_]+)_(?P<model>.+)_(?P<method>gguf|gptq|bnb|awq|hf)_(?P<bits>\d+)bit$", re.I)
GGUF_LEVEL_IN_NAME = re.compile(r"(?:^|[-_.])(?P<level>(?:i?q\d(?:_[a-z0-9]+)*)|f16|bf16|f32)$", re.I)
# llama.cpp's general.file_type numbers for the common levels (llama.h, enum llama_ftype).
GGUF_FILE_TYPES = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k",
    11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s",
    17: "q5_k_m", 18: "q6_k", 19: "iq2_xxs", 20: "iq2_xs", 21: "q2_k_s", 22: "iq3_xs", 23: "iq3_xxs",
    24: "iq1_s", 25: "iq4_nl", 26: "iq3_s", 27: "iq3_m", 28: "iq2_s", 29: "iq2_m", 30: "iq4_xs",
    31: "iq1_m", 32: "bf16",
}
LEVEL_BITS = {"f32": 32.0, "f16": 16.0, "bf16": 16.0}


@dataclass
class ModelRecord:
    """One model found on disk, usable or not (with the reason)."""

    name: str
    path: Path
    format: str  # gguf | gptq | bnb | hf | remote | unknown
    bits: Optional[float] = None
    level: Optional[str] = None
    size_bytes: int = 0
    parameter_count: Optional[int] = None
    context_length: Optional[int] = None
    architecture: Optional[str] = None
    has_chat_template: bool = False
    block_count: Optional[int] = None  # transformer layers, for the KV-cache estimate
    kv_width: Optional[int] = None  # key (= value) width per token and layer: kv heads x head dim
    manifest: Optional[dict[str, Any]] = None
    usable: bool = True
    reason: str = ""
    display: dict[str, str] = field(default_factory=dict)
    # A remote endpoint's state (format "remote"): urls, model, key_env, health, latency, members.
    remote: Optional[dict[str, Any]] = None
    # What the model is for, from its files: "embedding" (an encoder or a sentence-transformers model: it makes
    # vectors, it cannot decode a token) or "generation" (lqmf.base.encoders decides).
    role: str = GENERATION

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "manifest"}
        data["path"] = str(self.path)
        data["has_manifest"] = self.manifest is not None
        if self.remote is None:
            data.pop("remote")
        return data


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _level_bits(level: Optional[str]) -> Optional[float]:
    if not level:
        return None
    if level in LEVEL_BITS:
        return LEVEL_BITS[level]
    match = re.search(r"q(\d)", level)
    return float(match.group(1)) if match else None


def inspect_gguf(path: Path, name: str) -> ModelRecord:
    """A record for one .gguf file, from its magic, metadata and tensor infos (lqmf.base.gguf_header)."""
    record = ModelRecord(name=name, path=path, format="gguf", size_bytes=_size(path), manifest=read_manifest(path))
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        record.usable, record.reason = False, "not a GGUF file (bad magic bytes)"
        return record
    try:
        header = read_gguf_header(path)
        if header.data_offset + header.data_bytes > record.size_bytes:
            raise ValueError(f"truncated: its tensors need {header.data_offset + header.data_bytes} bytes, "
                             f"the file has {record.size_bytes}")
        value = header.metadata.get
        if value("general.type") == "imatrix":
            record.usable, record.reason = False, "an importance matrix (llama-imatrix output), not a model"
            return record
        arch = value("general.architecture")
        record.architecture = arch
        record.context_length = value(f"{arch}.context_length") if arch else None
        record.block_count = value(f"{arch}.block_count") if arch else None
        heads, kv_heads = value(f"{arch}.attention.head_count"), value(f"{arch}.attention.head_count_kv")
        width = value(f"{arch}.embedding_length")
        key_len = value(f"{arch}.attention.key_length") or (width // heads if width and heads else None)
        record.kv_width = int((kv_heads or heads) * key_len) if key_len and (kv_heads or heads) else None
        record.has_chat_template = value("tokenizer.chat_template") is not None
        if arch:
            record.role = gguf_role(arch, value(f"{arch}.pooling_type"), value(f"{arch}.attention.causal"))
        file_type = value("general.file_type")
        record.level = GGUF_FILE_TYPES.get(file_type) if file_type is not None else None
        record.parameter_count = sum(t.numel for t in header.tensors)
    except Exception as exc:  # a truncated or corrupt file must not break the listing
        record.usable, record.reason = False, f"unreadable GGUF: {exc}"
    if record.level is None:
        match = GGUF_LEVEL_IN_NAME.search(path.stem)
        record.level = match.group("level").lower() if match else None
    record.bits = _level_bits(record.level)
    return record


def inspect_folder(path: Path) -> list[ModelRecord]:
    """Records for a folder: one for a GPTQ / bitsandbytes / HF model, one per GGUF file inside it, or none."""
    config_path = path / "config.json"
    if not config_path.is_file():
        ggufs = sorted(p for p in path.glob("*.gguf") if not p.name.startswith(".") and not is_temp_name(p.name))
        if len(ggufs) == 1:
            return [inspect_gguf(ggufs[0], path.name)]
        return [inspect_gguf(g, f"{path.name}-{g.stem}") for g in ggufs]
    return [_inspect_model_folder(path, config_path)]


def _inspect_model_folder(path: Path, config_path: Path) -> ModelRecord:
    record = ModelRecord(name=path.name, path=path, format="hf", size_bytes=_size(path), manifest=read_manifest(path))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        record.format, record.usable, record.reason = "unknown", False, f"config.json unreadable: {exc}"
        return record
    quant = config.get("quantization_config") or {}
    if not quant and (path / "quantize_config.json").is_file():
        quant = json.loads((path / "quantize_config.json").read_text(encoding="utf-8"))
        quant.setdefault("quant_method", "gptq")
    method = str(quant.get("quant_method", "")).lower()
    if method == "gptq":
        record.format, record.bits = "gptq", float(quant.get("bits", 4))
        record.level = f"{int(record.bits)}bit-g{quant.get('group_size', 128)}"
    elif method == "bitsandbytes":
        record.format = "bnb"
        if quant.get("load_in_8bit"):
            record.bits, record.level = 8.0, "int8"
        else:
            record.bits, record.level = 4.0, str(quant.get("bnb_4bit_quant_type", "nf4"))
    elif method:
        record.format, record.usable, record.reason = "unknown", False, f"unsupported quant_method {method!r}"
    else:
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
        record.level = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(dtype, dtype)
        record.bits = LEVEL_BITS.get(record.level)
    archs = config.get("architectures") or []
    record.architecture = archs[0] if archs else config.get("model_type")
    record.role = hf_role(config, (path / MODULES_FILE).is_file())
    record.context_length = config.get("max_position_embeddings")
    record.block_count = config.get("num_hidden_layers")
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (
        config["hidden_size"] // heads if heads and config.get("hidden_size") else None)
    kv_heads = config.get("num_key_value_heads") or heads
    record.kv_width = int(kv_heads * head_dim) if kv_heads and head_dim else None
    if record.manifest:
        record.parameter_count = record.manifest.get("parameter_count")
    tok_config = path / "tokenizer_config.json"
    if (path / "chat_template.jinja").is_file():
        record.has_chat_template = True
    elif tok_config.is_file():
        try:
            record.has_chat_template = bool(json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, json.JSONDecodeError):
            pass
    if record.usable:
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            record.usable, record.reason = False, "no weight files (*.safetensors or *.bin)"
        elif not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
            record.usable, record.reason = False, "no tokenizer files"
    return record


def _inspectors() -> dict[str, Callable[[Path], list[ModelRecord]]]:
    return {
        "file": lambda p: [inspect_gguf(p, p.stem)] if p.suffix == ".gguf" else [],
        "dir": inspect_folder,
    }


def _skipped(name: str) -> bool:
    return name.startswith(".") or is_temp_name(name) or name.endswith(MANIFEST_SUFFIX)


def inspect_entry(entry: Path) -> list[ModelRecord]:
    """The records of one top-level entry of the models folder (unusable with the reason when odd)."""
    kind = "dir" if entry.is_dir() else "file"
    try:
        return _inspectors()[kind](entry)
    except Exception as exc:  # one odd entry must never hide the others
        log.warning("could not inspect %s: %s", entry, exc)
        return [ModelRecord(entry.name, entry, "unknown", usable=False, reason=f"could not inspect: {exc}")]


def _assemble(per_entry: Iterable[list[ModelRecord]]) -> list[ModelRecord]:
    """Fresh copies of the records, uniquely named in entry order, sorted by name."""
    records: dict[str, ModelRecord] = {}
    for found in per_entry:
        for original in found:
            record = replace(original, display={})
            match = BRIEF_NAME.match(record.name)
            if match:
                record.display = dict(match.groupdict())
            name, n = record.name, 2
            while name in records:  # e.g. demo.gguf beside a folder named demo
                name, n = f"{record.name}-{n}", n + 1
            record.name = name
            records[name] = record
    return [records[k] for k in sorted(records)]


def discover(models_dir: Path) -> list[ModelRecord]:
    """Every model in `models_dir`, sorted by name; unusable ones carry the reason. Never raises."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    entries = sorted(e for e in models_dir.iterdir() if not _skipped(e.name))
    return _assemble(inspect_entry(e) for e in entries)


# What an entry looked like when it was inspected: stat facts only, nothing is read.
Signature = tuple
# A file changed this soon after it was inspected may have changed again within the filesystem's
# timestamp granularity without changing its stat: such an entry is inspected again (git's "racy clean").
RACY_NS = 100_000_000


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _entry_signature(entry: os.DirEntry, names: dict[str, os.DirEntry]) -> tuple[Signature, int]:
    """Stat facts that change whenever discovery could see the entry differently, and the newest mtime."""
    own = entry.stat()
    if entry.is_dir():
        # A folder's own mtime misses files rewritten in place, so its children are stat'ed too;
        # deeper levels only show through their folder's mtime (models keep their files at the top).
        with os.scandir(entry.path) as children:
            inner = sorted((c.name, c.is_dir(), _stat_key(c.stat())) for c in children)
        newest = max([own.st_mtime_ns] + [key[2] for _, _, key in inner])
        return ("dir", _stat_key(own), tuple(inner)), newest
    sidecar = names.get(entry.name + MANIFEST_SUFFIX)  # a file's manifest lives beside it
    side = sidecar.stat() if sidecar is not None else None
    newest = max(own.st_mtime_ns, side.st_mtime_ns if side is not None else 0)
    return ("file", _stat_key(own), _stat_key(side) if side is not None else None), newest


def _copy(record: ModelRecord) -> ModelRecord:
    """A shallow copy with its own display dict (dataclasses.replace costs several times more)."""
    new = object.__new__(ModelRecord)
    new.__dict__.update(record.__dict__)
    new.display = dict(record.display)
    return new


@dataclass
class _Scan:
    folder: str
    signatures: dict[str, Signature]
    records: dict[str, list[ModelRecord]]
    racy: set[str]  # entries to inspect again even if their signature holds
    assembled: list[ModelRecord]
    started: float


class DiscoveryCache:
    """discover(), re-inspecting only the entries whose stat signature changed since the last call.

    Every call stats the folder's entries (no file is read), so a new, removed or rewritten model
    shows up at once, while one new file does not re-parse every GGUF header. Thread-safe, and
    single-flight: callers that arrive during a scan take its result rather than scanning again.
    """

    def __init__(self, inspect: Callable[[Path], list[ModelRecord]] = inspect_entry) -> None:
        self._inspect = inspect
        self._lock = threading.Lock()
        self._scan: Optional[_Scan] = None
        self.inspections = 0  # entries inspected (parsed) so far: what the cache saves

    def records(self, models_dir: Path) -> list[ModelRecord]:
        """Every model in `models_dir` (as discover() answers), fresh copies the caller may change."""
        folder = str(Path(models_dir))
        arrived = time.monotonic()
        with self._lock:
            scan = self._scan
            if scan is None or scan.folder != folder or scan.started < arrived:
                scan = self._scan = self._rescan(folder, scan if scan is not None and scan.folder == folder else None)
            assembled = scan.assembled
        return [_copy(r) for r in assembled]

    def invalidate(self) -> None:
        """Forget everything: the next call inspects every entry again."""
        with self._lock:
            self._scan = None

    def _rescan(self, folder: str, previous: Optional[_Scan]) -> _Scan:
        started, wall_ns = time.monotonic(), time.time_ns()
        try:
            with os.scandir(folder) as it:
                entries = {e.name: e for e in it}
        except FileNotFoundError:
            entries = {}
        except OSError as exc:  # not a folder, or unreadable: no models, and the log says why
            log.warning("cannot list the models folder %s: %s", folder, exc)
            entries = {}
        signatures: dict[str, Signature] = {}
        records: dict[str, list[ModelRecord]] = {}
        racy: set[str] = set()
        changed = previous is None or previous.signatures.keys() != {n for n in entries if not _skipped(n)}
        for name in sorted(n for n in entries if not _skipped(n)):
            try:
                signature, newest = _entry_signature(entries[name], entries)
            except OSError as exc:  # removed while we looked, or unreadable: the inspection says why
                signature, newest = ("unreadable", type(exc).__name__), 0
            signatures[name] = signature
            if previous is not None and previous.signatures.get(name) == signature and name not in previous.racy:
                records[name] = previous.records[name]
                continue
            self.inspections += 1
            records[name] = self._inspect(Path(folder) / name)
            changed = True
            if newest >= wall_ns - RACY_NS:
                racy.add(name)
        assembled = _assemble(records.values()) if changed or previous is None else previous.assembled
        return _Scan(folder, signatures, records, racy, assembled, started)


def chat_template_of(record: ModelRecord) -> Optional[str]:
    """The chat template a model ships (GGUF metadata, chat_template.jinja or tokenizer_config.json)."""
    if record.format == "gguf":
        from gguf import GGUFReader

        field = GGUFReader(str(record.path)).fields.get("tokenizer.chat_template")
        return field.contents() if field is not None else None
    jinja = record.path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = record.path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None
