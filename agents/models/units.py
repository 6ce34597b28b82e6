"""A model on disk as a unit of files: its artefact, its manifest and the importance matrix made for it.

What remove, rename and copy move (agents.models.admin) and what show and disk usage count (agents.models.show).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from agents.models.results import ModelFiles
from lqmf.base.errors import LQMFError
from lqmf.base.manifest import MANIFEST_SUFFIX, manifest_path_for
from server.runtime.discovery import ModelRecord

IMATRIX_DIR = ".imatrix"  # as the quantization agent keeps them (agents/quantization/factory.py)
IMATRIX_SUFFIX = ".imatrix.gguf"


@dataclass
class ModelUnit:
    """The files that make one model on disk, and what they take."""

    name: str
    kind: str  # file | folder | gguf-folder (a folder holding one .gguf) | member (one of several in a folder)
    artefact: Path  # what is moved: the file or the folder
    manifest: Optional[Path]  # a file's manifest beside it (a folder's lives inside the folder)
    children: list[Path] = field(default_factory=list)  # importance matrix and its manifest
    artefact_bytes: int = 0
    manifest_bytes: int = 0
    children_bytes: int = 0
    frees_bytes: int = 0  # what removing it frees: files with no other hard link

    @property
    def total_bytes(self) -> int:
        return self.artefact_bytes + self.manifest_bytes + self.children_bytes

    def paths(self) -> list[Path]:
        return [self.artefact, *([self.manifest] if self.manifest else []), *self.children]

    def files(self) -> Iterator[Path]:
        """Every regular file of the unit (a folder's files recursively)."""
        for path in self.paths():
            if path.is_dir() and not path.is_symlink():
                yield from (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
            elif path.is_file():
                yield path

    def describe(self) -> str:
        """"the file, its manifest, 1 imatrix" — what a removal takes."""
        parts = ["the folder" if self.artefact.is_dir() else "the file"]
        if self.manifest is not None or (self.artefact.is_dir() and (self.artefact / "lqmf.json").is_file()):
            parts.append("its manifest")
        matrices = [c for c in self.children if c.name.endswith(IMATRIX_SUFFIX)]
        if matrices:
            parts.append(f"{len(matrices)} imatrix")
        return ", ".join(parts)

    def facts(self) -> ModelFiles:
        """The unit's paths (as text) and bytes, as `show` and `disk usage` report them."""
        return ModelFiles(name=self.name, kind=self.kind, artefact=str(self.artefact),
                          manifest=str(self.manifest) if self.manifest else None,
                          children=[str(c) for c in self.children], artefact_bytes=self.artefact_bytes,
                          manifest_bytes=self.manifest_bytes, children_bytes=self.children_bytes,
                          total_bytes=self.total_bytes, frees_bytes=self.frees_bytes)


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    return path.lstat().st_size if path.exists() or path.is_symlink() else 0


def _imatrix_children(models_dir: Path, stem: str, manifest: Optional[dict]) -> list[Path]:
    """The importance matrix made for a model (by the quantization agent's naming, or its manifest's record)."""
    found: list[Path] = []
    candidates = [models_dir / IMATRIX_DIR / f"{stem}{IMATRIX_SUFFIX}"]
    recorded = ((manifest or {}).get("details") or {}).get("imatrix") or {}
    if recorded.get("path"):
        candidates.append(Path(recorded["path"]))
    for path in candidates:
        try:
            inside = path.resolve().parent == (models_dir / IMATRIX_DIR).resolve()
        except OSError:
            continue
        if inside and path.is_file() and path not in found:
            found.append(path)
            side = path.with_name(path.name + MANIFEST_SUFFIX)
            if side.is_file():
                found.append(side)
    return found


def model_unit(record: ModelRecord, models_dir: Path) -> ModelUnit:
    """The files of a discovered local model and their sizes."""
    models_dir = Path(models_dir)
    path = Path(record.path)
    try:
        top = models_dir / path.relative_to(models_dir).parts[0]
    except ValueError:
        raise LQMFError(f"{record.name} is not inside the models folder {models_dir}",
                        "only models in the models folder can be managed here") from None
    if path.is_dir():
        kind, artefact, manifest = "folder", path, None
    elif top == path:
        kind, artefact, manifest = "file", path, manifest_path_for(path)
    elif len([p for p in top.glob("*.gguf") if not p.name.startswith(".")]) == 1:
        kind, artefact, manifest = "gguf-folder", top, None
    else:
        kind, artefact, manifest = "member", path, manifest_path_for(path)
    if manifest is not None and not manifest.is_file():
        manifest = None
    stem = path.stem if path.suffix == ".gguf" else path.name
    unit = ModelUnit(name=record.name, kind=kind, artefact=artefact, manifest=manifest,
                     children=_imatrix_children(models_dir, stem, record.manifest))
    unit.artefact_bytes = _size(artefact)
    unit.manifest_bytes = _size(manifest) if manifest else 0
    unit.children_bytes = sum(_size(c) for c in unit.children)
    unit.frees_bytes = sum(st.st_size for st in (p.lstat() for p in unit.files()) if st.st_nlink <= 1)
    return unit
