"""Model management on disk: remove, rename, copy (the shell and the HTTP routes call these).

A model is a *unit* of files: its artefact (a .gguf file, or a folder), its manifest (beside a file as
`<file>.lqmf.json`, inside a folder as `lqmf.json`) and cached children made for it (the importance
matrix in `<models>/.imatrix/<stem>.imatrix.gguf` and that file's own manifest). Every change is made so
that a crash never leaves a half-changed model that discovery lists as usable:

- remove: the artefact is renamed into a hidden temporary (one rename: discovery no longer lists it),
  then its manifest and children join it there, then the temporary is deleted; a crash leaves only
  the temporary, which `sweep_stale_temps` deletes once this process is gone.
- rename: the new manifest is written first (an orphan manifest is never listed), then the artefact is
  renamed in one step, then the old manifest and the children follow; the manifests of models made
  from it are rewritten (atomically) to name the new path, so lineage holds.
- copy: built in a hidden temporary, renamed into place when complete.

Each change is recorded in the history (`model_changes`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from agents.models.results import Change
from agents.models.units import IMATRIX_DIR, ModelUnit, model_unit
from lqmf.base.atomic import atomic_output, ensure_disk_space, temp_sibling
from lqmf.base.errors import InvalidRequest, LQMFError, ModelNotFound, OutputExists
from lqmf.base.files import write_text_atomic
from lqmf.base.manifest import MANIFEST_SUFFIX, manifest_path_for, portable
from lqmf.base.names import MODEL_NAME_MAX, NEW_MODEL_NAME
from lqmf.base.units import format_bytes
from server.runtime.discovery import ModelRecord

log = logging.getLogger(__name__)

RESERVED_NAMES = ("default",)  # `default` names the active model (use NAME)


def _local_record(manager, name: str) -> ModelRecord:
    record = manager.record(name)
    if record.format == "remote":
        raise LQMFError(f"{name} is a remote endpoint, not files on this disk",
                        f"remove endpoint {name} forgets it; list endpoints shows them")
    return record


# -- checks ------------------------------------------------------------------------------------------------
def check_new_name(manager, new: str) -> str:
    """A name a model may take: well-formed, not reserved, not a model's or a file's already."""
    new = (new or "").strip()
    if not new or len(new) > MODEL_NAME_MAX or not NEW_MODEL_NAME.match(new):
        raise InvalidRequest(f"{new!r} cannot be a model's name",
                             "use letters, digits and . _ + - (no paths, spaces or ':'), at most 200 characters")
    if new.lower() in RESERVED_NAMES:
        raise InvalidRequest(f"{new!r} is reserved (it names the default model)", "choose another name")
    if new.endswith(".gguf") or new.endswith(MANIFEST_SUFFIX):
        raise InvalidRequest(f"give the name without a suffix, not {new!r}",
                             f"{new.removesuffix('.gguf')} (the .gguf is added for a file)")
    if new in {r.name for r in manager.available()}:
        raise OutputExists(f"a model named {new} already exists", "choose another name, or remove that one first")
    return new


def _target(unit: ModelUnit, models_dir: Path, new: str) -> Path:
    artefact = models_dir / (f"{new}.gguf" if unit.artefact.is_file() else new)
    for taken in (artefact, artefact.with_name(artefact.name + MANIFEST_SUFFIX) if artefact.suffix == ".gguf" else None,
                  models_dir / new, models_dir / f"{new}.gguf"):
        if taken is not None and (taken.exists() or taken.is_symlink()):
            raise OutputExists(f"{taken} already exists in the models folder",
                               "choose another name, or move that file away first")
    return artefact


# -- remove -------------------------------------------------------------------------------------------------
def plan_removal(manager, name: str) -> ModelUnit:
    """What `remove NAME` would delete (nothing is touched): for the question before it."""
    return model_unit(_local_record(manager, name), manager.settings.models_dir)


def check_removable(manager, name: str) -> None:
    """Refuse (ModelBusy) now what remove_model would refuse: a remote endpoint, a loaded, loading or busy model."""
    _local_record(manager, name)
    with manager.changing(name, "removed"):
        pass


def removal_question(units: list[ModelUnit]) -> str:
    """One question for every model a removal deletes, with the bytes and paths of each."""
    said = [f"{unit.name} ({format_bytes(unit.total_bytes)}: {unit.describe()})" for unit in units]
    if len(said) == 1:
        return f"Remove {said[0]}? [y/N]"
    total = format_bytes(sum(unit.total_bytes for unit in units))
    return f"Remove {len(said)} models, {total} in all: {'; '.join(said)}? [y/N]"


def remove_model(manager, name: str, *, unload: bool = False, store=None) -> Change:
    """Delete a local model: its artefact, manifest and importance matrix. Refuses while it is loaded or
    busy (ModelBusy) unless `unload`: then it is unloaded first (still refused while requests run)."""
    started = time.perf_counter()
    models_dir = Path(manager.settings.models_dir)
    record = _local_record(manager, name)
    was_loaded = manager.is_loaded(name)
    with manager.changing(name, "removed", unload=unload):
        unit = model_unit(manager.record(name), models_dir)
        files = [str(p) for p in unit.paths()]
        trash = temp_sibling(models_dir / unit.artefact.name)
        trash.mkdir()
        try:
            # The artefact first, in one rename: from here on discovery does not list the model.
            os.replace(unit.artefact, trash / unit.artefact.name)
            for index, path in enumerate(unit.paths()[1:]):
                if path.exists():
                    os.replace(path, trash / f"{index}-{path.name}")
        except BaseException:
            _undo_trash(trash, unit)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        _drop_empty(models_dir / IMATRIX_DIR)
        _leave_default_chain(manager, name, None)
    change = Change("removed", record.name, None, str(unit.artefact), None, unit.total_bytes, unit.frees_bytes,
                    tuple(files), unloaded=was_loaded, seconds=round(time.perf_counter() - started, 3))
    _record(store, change)
    log.info("removed %s (%d bytes, %s)", name, unit.total_bytes, ", ".join(files))
    return change


def _undo_trash(trash: Path, unit: ModelUnit) -> None:
    """Put back what a failed removal had moved (the artefact first), so nothing is half removed."""
    moved = trash / unit.artefact.name
    try:
        if moved.exists() and not unit.artefact.exists():
            os.replace(moved, unit.artefact)
        for index, path in enumerate(unit.paths()[1:]):
            held = trash / f"{index}-{path.name}"
            if held.exists() and not path.exists():
                os.replace(held, path)
        shutil.rmtree(trash, ignore_errors=True)
    except OSError:
        log.exception("could not put back %s from %s", unit.name, trash)


def _drop_empty(folder: Path) -> None:
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def _leave_default_chain(manager, old: str, new: Optional[str]) -> None:
    """Keep the default model's chain (use NAME) pointing at models that exist."""
    try:
        chain = manager.active.chain()
    except LQMFError:
        return
    if old not in chain:
        return
    updated = [new if n == old else n for n in chain if n != old or new is not None]
    manager.active.set(updated)
    log.info("default chain: %s -> %s", " then ".join(chain), " then ".join(updated) or "(none)")


# -- rename / copy --------------------------------------------------------------------------------------------
def _moved_manifest(manifest: Optional[dict], unit: ModelUnit, new: str, new_artefact: Path,
                    new_children: dict[Path, Path], note: dict[str, Any]) -> Optional[dict]:
    """The model's manifest as it must read under its new name and path (None when it has none)."""
    if manifest is None:
        return None
    data = json.loads(json.dumps(manifest))
    data["name"] = new
    if unit.artefact.is_file():
        old_name = unit.artefact.name
        for weight in data.get("weight_files") or []:
            if weight.get("path") == old_name:
                weight["path"] = new_artefact.name
    imatrix = (data.get("details") or {}).get("imatrix")
    if isinstance(imatrix, dict) and imatrix.get("path"):
        for old_path, new_path in new_children.items():
            if Path(imatrix["path"]).name == old_path.name:
                imatrix["path"] = str(new_path)
    data.setdefault("details", {}).update(note)
    return data


def _children_targets(unit: ModelUnit, new: str) -> dict[Path, Path]:
    old_stem = unit.artefact.stem if unit.artefact.suffix == ".gguf" else unit.artefact.name
    if unit.kind == "gguf-folder":
        old_stem = next(iter(sorted(unit.artefact.glob("*.gguf")))).stem
    targets = {}
    for child in unit.children:
        suffix = child.name[len(old_stem):] if child.name.startswith(old_stem) else child.name
        targets[child] = child.with_name(f"{new}{suffix}")
    for target in targets.values():
        if target.exists():
            raise OutputExists(f"{target} already exists", "move it away first, or choose another name")
    return targets


def _model_manifest_path(unit: ModelUnit, artefact: Path) -> Optional[Path]:
    """Where the unit's own manifest lives once its artefact is at `artefact`."""
    if unit.kind == "file" or unit.kind == "member":
        return artefact.with_name(artefact.name + MANIFEST_SUFFIX)
    if unit.kind == "folder":
        return artefact / "lqmf.json"
    ggufs = sorted(p for p in artefact.glob("*.gguf") if not p.name.startswith("."))
    return manifest_path_for(ggufs[0]) if ggufs else None


def rename_model(manager, name: str, new: str, *, store=None) -> Change:
    """Rename a local model (refused while loaded): artefact, manifest and importance matrix move together,
    and the manifests of models made from it are updated to its new path."""
    started = time.perf_counter()
    models_dir = Path(manager.settings.models_dir)
    record = _local_record(manager, name)
    new = check_new_name(manager, new)
    with manager.changing(name, "renamed"):
        record = manager.record(name)
        unit = model_unit(record, models_dir)
        if unit.kind == "member":
            raise LQMFError(f"{name} is one of several models in the folder {unit.artefact.parent}",
                            f"copy {name} to {new} makes it a model of its own; then remove {name}")
        target = _target(unit, models_dir, new)
        children = _children_targets(unit, new)
        manifest = record.manifest
        data = _moved_manifest(manifest, unit, new, target, children, {"renamed_from": name})
        children_of = _children(manager, record)
        # 1. The new manifest beside the new name (a file's): alone it is never listed.
        new_side = target.with_name(target.name + MANIFEST_SUFFIX) if unit.manifest is not None else None
        if new_side is not None and data is not None:
            write_text_atomic(new_side, json.dumps(portable(data, models_dir), indent=2, sort_keys=True))
        try:
            # 2. The artefact, in one rename: the model is listed under its new name from here on.
            os.replace(unit.artefact, target)
        except BaseException:
            if new_side is not None:
                new_side.unlink(missing_ok=True)
            raise
        # 3. What follows it: the old manifest, the manifest inside a folder, the importance matrix.
        if unit.manifest is not None:
            unit.manifest.unlink(missing_ok=True)
        elif data is not None:
            inner = _model_manifest_path(unit, target)
            if inner is not None and inner.is_file():
                write_text_atomic(inner, json.dumps(portable(data, models_dir), indent=2, sort_keys=True))
        for old_child, new_child in children.items():
            if old_child.exists():
                os.replace(old_child, new_child)
        for new_child in children.values():
            _rename_in_manifest(new_child, new_child.name)
        # 4. Lineage: models made from it now name the new path.
        new_path = _record_path_after(unit, record, target)
        updated = []
        for child in children_of:
            if _point_source(child, new_path):
                updated.append(child.name)
        _leave_default_chain(manager, name, new)
    change = Change("renamed", name, new, str(unit.artefact), str(target), unit.total_bytes,
                    files=tuple(str(p) for p in unit.paths()), updated_children=tuple(updated),
                    seconds=round(time.perf_counter() - started, 3))
    _record(store, change)
    log.info("renamed %s to %s (%s); lineage updated in %s", name, new, target, ", ".join(updated) or "none")
    return change


def _rename_in_manifest(file: Path, new_file_name: str) -> None:
    """An importance matrix's own manifest (beside it) names the file: keep it true."""
    side = file.with_name(file.name + MANIFEST_SUFFIX)
    if not side.is_file() or file.name.endswith(MANIFEST_SUFFIX):
        return
    data = json.loads(side.read_text(encoding="utf-8"))
    data["name"] = new_file_name
    for weight in data.get("weight_files") or []:
        weight["path"] = new_file_name
    write_text_atomic(side, json.dumps(data, indent=2, sort_keys=True))


def _record_path_after(unit: ModelUnit, record: ModelRecord, target: Path) -> Path:
    """The path discovery will give the model after its artefact moved to `target`."""
    if unit.kind == "gguf-folder":
        return target / Path(record.path).name
    return target


def _children(manager, record: ModelRecord) -> list[ModelRecord]:
    """Discovered local models whose manifest names `record` as their source (by file name, as lineage does)."""
    mine = Path(record.path).name
    return [r for r in manager.available()
            if r.format != "remote" and r.name != record.name and r.manifest
            and Path(((r.manifest.get("source") or {}).get("path")) or "").name == mine]


def _point_source(child: ModelRecord, new_path: Path) -> bool:
    """Rewrite a child's manifest so its source is `new_path` (atomically); False when it has no manifest file."""
    path = manifest_path_for(Path(child.path))
    if not path.is_file():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("source", {})["path"] = str(new_path)
    write_text_atomic(path, json.dumps(portable(data, Path(child.path).parent), indent=2, sort_keys=True))
    return True


def copy_model(manager, name: str, new: str, *, store=None) -> Change:
    """Copy a local model under a new name (it may be loaded): files, manifest and importance matrix, built in a
    hidden temporary and renamed into place. Models made from the original keep naming the original."""
    started = time.perf_counter()
    models_dir = Path(manager.settings.models_dir)
    record = _local_record(manager, name)
    new = check_new_name(manager, new)
    unit = model_unit(record, models_dir)
    artefact_is_dir = unit.artefact.is_dir()
    if unit.kind == "member":  # one file of a shared folder becomes a model of its own
        unit = ModelUnit(unit.name, "file", unit.artefact, unit.manifest, unit.children, unit.artefact_bytes,
                         unit.manifest_bytes, unit.children_bytes, unit.frees_bytes)
    target = _target(unit, models_dir, new)
    children = _children_targets(unit, new)
    ensure_disk_space(models_dir, unit.total_bytes + 16 * 2**20, f"a copy of {name}")
    data = _moved_manifest(record.manifest, unit, new, target, children,
                           {"copied_from": {"name": name, "path": str(record.path)}})
    new_side = target.with_name(target.name + MANIFEST_SUFFIX) if not artefact_is_dir else None
    made: list[Path] = []
    try:
        for old_child, new_child in children.items():  # hidden folder: never listed as models
            with atomic_output(new_child) as tmp:
                shutil.copy2(old_child, tmp)
            made.append(new_child)
        for new_child in children.values():
            _rename_in_manifest(new_child, new_child.name)
        if new_side is not None and data is not None:
            write_text_atomic(new_side, json.dumps(portable(data, models_dir), indent=2, sort_keys=True))
            made.append(new_side)
        with atomic_output(target, is_dir=artefact_is_dir) as tmp:
            if artefact_is_dir:
                shutil.copytree(unit.artefact, tmp, symlinks=True, dirs_exist_ok=True)
                inner = _model_manifest_path(unit, tmp)
                if data is not None and inner is not None and inner.is_file():
                    write_text_atomic(inner, json.dumps(portable(data, models_dir), indent=2, sort_keys=True))
            else:
                shutil.copy2(unit.artefact, tmp)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise
    manager.discovery.invalidate()
    change = Change("copied", name, new, str(unit.artefact), str(target), unit.total_bytes,
                    files=tuple(str(p) for p in [target, *([new_side] if new_side else []), *children.values()]),
                    seconds=round(time.perf_counter() - started, 3))
    _record(store, change)
    log.info("copied %s to %s (%s)", name, new, target)
    return change


def _record(store, change: Change) -> None:
    if store is None:
        return
    store.record_model_change(change.action, change.name, change.new_name, change.path, change.new_path,
                              change.size_bytes, change.to_dict())



def require_model(manager, name: Optional[str], verb: str) -> str:
    """The model a command acts on, or a clear error naming the form."""
    if not name:
        raise ModelNotFound(f"which model should I {verb}?", f"{verb} NAME (list models shows the names)")
    return name
