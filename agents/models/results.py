"""What asking about the models returns: the listing, one model's details, changes, disk usage, the remote
endpoints and an export to another engine.

The library (lqmf.api) returns these, the shell draws them (cli/render.py, cli/render_models.py) and --json
prints their to_dict().
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional

from lqmf.base.results import Result

if TYPE_CHECKING:  # typing only
    from server.runtime.discovery import ModelRecord


@dataclass
class ModelList(Result):
    """Every model on disk (usable or not), then every remote endpoint; iterate it for the records."""

    models_dir: str = ""
    models: list["ModelRecord"] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)  # the names loaded in memory now

    def __iter__(self) -> Iterator["ModelRecord"]:
        return iter(self.models)

    @staticmethod
    def measured_bits(record: "ModelRecord") -> Optional[float]:
        """Bits per weight as the model's manifest measured them (weight bytes x 8 / parameters); None without one.

        A level's name says less: q4_k_m on 576-wide rows holds 6.17 bits per weight (llama.cpp's shape fallbacks).
        """
        bpw = (record.manifest or {}).get("bits_per_weight")
        return round(float(bpw), 4) if isinstance(bpw, (int, float)) and bpw > 0 else None

    @property
    def names(self) -> list[str]:
        """The models' names, in the listing's order."""
        return [record.name for record in self.models]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each record's facts (without its manifest) and whether it is loaded."""
        models = [{**record.to_dict(), "loaded": record.name in self.loaded,
                   "bits_per_weight": self.measured_bits(record)} for record in self.models]
        return {"ok": self.ok, "models_dir": self.models_dir, "models": models, "type": type(self).__name__}


@dataclass
class ModelFiles:
    """The files that make one model on disk and their bytes (units.ModelUnit's facts, paths as text)."""

    name: str = ""
    kind: str = ""  # file | folder | gguf-folder (a folder holding one .gguf) | member (one of several in a folder)
    artefact: str = ""  # the file or the folder
    manifest: Optional[str] = None  # a file's manifest beside it (a folder's lives inside the folder)
    children: list[str] = field(default_factory=list)  # importance matrix and its manifest
    artefact_bytes: int = 0
    manifest_bytes: int = 0
    children_bytes: int = 0
    total_bytes: int = 0  # artefact, manifest and children together
    frees_bytes: int = 0  # what removing it frees: files with no other hard link

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelDetails(Result):
    """`show NAME`: the manifest's facts, the lineage tree, the latest figures, chat template and context.

    A remote endpoint (format "remote") has `remote` and no files: no disk, size, manifest or loaded context.
    """

    name: str = ""
    format: str = ""  # gguf | gptq | bnb | hf | remote | unknown
    level: Optional[str] = None
    bits: Optional[float] = None
    path: str = ""
    architecture: Optional[str] = None
    parameter_count: Optional[int] = None
    context_length: Optional[int] = None
    usable: bool = True
    reason: str = ""  # why it is not usable
    role: str = "generation"  # embedding | generation (server.runtime.discovery.ModelRecord.role)
    loaded: bool = False
    remote: Optional[dict[str, Any]] = None  # a remote endpoint's state: urls, model, key_env, health, members
    size_bytes: int = 0  # the files' bytes (disk.total_bytes)
    disk: Optional[ModelFiles] = None
    has_manifest: bool = False
    manifest: Optional[dict[str, Any]] = None  # the manifest's summary: method, level, bits_per_weight, source, ...
    lineage: dict[str, Any] = field(default_factory=dict)  # {"ancestors": [...], "tree": {"name", "children"}}
    figures: dict[str, Any] = field(default_factory=dict)  # the newest {"speed": ..., "fidelity": ...}
    has_chat_template: bool = False
    chat_template: Optional[str] = None  # None when asked without it (Ollama's /api/show sends its own)
    chat_template_first_line: Optional[str] = None
    loaded_context_length: Optional[int] = None  # the context it was loaded with, while loaded
    changes: list[dict[str, Any]] = field(default_factory=list)  # its renames, copies, removals, newest first

    def model_dict(self) -> dict[str, Any]:
        """The details as JSON (GET /models/{name}, /api/show's "lqmf"): a model on disk has no `remote`; a remote
        endpoint has no size_bytes, has_manifest or loaded_context_length."""
        facts = {"name": self.name, "format": self.format, "level": self.level, "bits": self.bits, "path": self.path,
                 "architecture": self.architecture, "parameter_count": self.parameter_count,
                 "context_length": self.context_length, "usable": self.usable, "reason": self.reason,
                 "role": self.role, "loaded": self.loaded}
        disk = self.disk.to_dict() if self.disk is not None else None
        if self.format == "remote":
            return {**facts, "remote": self.remote, "manifest": self.manifest, "lineage": self.lineage,
                    "figures": self.figures, "chat_template": self.chat_template,
                    "chat_template_first_line": self.chat_template_first_line,
                    "has_chat_template": self.has_chat_template, "disk": disk, "changes": self.changes}
        return {**facts, "size_bytes": self.size_bytes, "disk": disk, "has_manifest": self.has_manifest,
                "manifest": self.manifest, "lineage": self.lineage, "figures": self.figures,
                "has_chat_template": self.has_chat_template, "chat_template": self.chat_template,
                "chat_template_first_line": self.chat_template_first_line,
                "loaded_context_length": self.loaded_context_length, "changes": self.changes}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the details under "model"."""
        return {"ok": self.ok, "model": self.model_dict(), "type": type(self).__name__}


@dataclass(frozen=True)
class Change:
    """One change made to the models on disk (what the history records)."""

    action: str  # removed | renamed | copied
    name: str
    new_name: Optional[str]
    path: str
    new_path: Optional[str]
    size_bytes: int
    freed_bytes: int = 0
    files: tuple[str, ...] = ()
    updated_children: tuple[str, ...] = ()  # models whose manifest now names the new path (rename)
    unloaded: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"], data["updated_children"] = list(self.files), list(self.updated_children)
        return data


@dataclass
class ModelChanged(Result):
    """A model removed, renamed or copied: what changed on disk (and was recorded in the history)."""

    change: Optional[Change] = None


@dataclass
class ModelsRemoved(Result):
    """Several models removed by one command ("remove A and B"), each as ModelChanged records it."""

    changes: list[Change] = field(default_factory=list)


@dataclass
class DiskUsageRow(ModelFiles):
    """One model's line of `disk usage`: its files' bytes, and what discovery and the manager say of it."""

    format: str = ""
    level: Optional[str] = None
    usable: bool = True
    loaded: bool = False


@dataclass
class DiskUsage(Result):
    """Per model: bytes on disk and what removing it frees; the total and the disk's free space."""

    models_dir: str = ""
    models: list[DiskUsageRow] = field(default_factory=list)  # the biggest first
    total_bytes: int = 0  # every file once (a hard-linked file counts once)
    frees_bytes: int = 0  # what removing every model frees
    disk_free_bytes: int = 0  # on the models folder's disk
    disk_total_bytes: int = 0

    def usage_dict(self) -> dict[str, Any]:
        """The usage as JSON (GET /models/disk-usage)."""
        data = asdict(self)
        del data["ok"]
        return data

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the usage under "usage"."""
        return {"ok": self.ok, "usage": self.usage_dict(), "type": type(self).__name__}


@dataclass
class EndpointList(Result):
    """Remote endpoints with their members' health; `changed` says what a command just did to them."""

    endpoints: list[dict[str, Any]] = field(default_factory=list)
    changed: str = ""
    problem: Optional[str] = None  # why the endpoints file cannot be read at all (none of it is listed then)


@dataclass
class EndpointRemoved(Result):
    """An endpoint forgotten: its public facts (never a key, only the variable it came from)."""

    name: str = ""
    urls: list[str] = field(default_factory=list)
    model: Optional[str] = None
    key_env: Optional[str] = None


@dataclass
class ExportResult(Result):
    """The command that serves a model on another engine, and what to know about it."""

    target: str = ""
    model: str = ""
    command: str = ""
    notes: list[str] = field(default_factory=list)
    experimental: bool = False
