"""Importing a local model: a transformers folder or a .gguf file copied into the models folder, with a manifest."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

from agents.quantization.acquire.placement import DISK_MARGIN_BYTES, Acquired, check_name
from agents.quantization.acquire.selection import pick_hf_files
from lqmf.base.atomic import atomic_output, ensure_disk_space
from lqmf.base.encoders import read_layout
from lqmf.base.errors import LQMFError, ModelNotFound, OutputExists
from lqmf.base.manifest import measure_run
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings
from server.runtime.discovery import GGUF_MAGIC, inspect_folder, inspect_gguf

log = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 8 << 20


def import_model(
    path: Path | str, settings: Settings, *, name: Optional[str] = None, progress: Optional[Progress] = None
) -> Acquired:
    """Copy a local HF model folder or .gguf file into the models folder, atomically, with a manifest."""
    started = time.perf_counter()
    src = Path(path).expanduser()
    if not src.exists():
        raise ModelNotFound(f"nothing at {src}", "give the path of a Hugging Face model folder or a .gguf file")
    src = src.resolve()
    models_dir = Path(settings.models_dir)
    if src.parent == models_dir.resolve():
        raise OutputExists(f"{src.name} is already in the models folder", "it is listed as it is; nothing to import")
    if src.is_dir():
        return _import_folder(src, models_dir, name, progress, started)
    if src.is_file():
        return _import_gguf(src, models_dir, name, progress, started)
    raise ModelNotFound(f"{src} is neither a folder nor a file", "give a Hugging Face model folder or a .gguf file")


def _copy_with_progress(src: Path, dest: Path, what: str, done: int, total: int, progress: Optional[Progress]) -> int:
    """Copy one file's bytes (not its permissions: sources may be read-only); return the running byte count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as reader, open(dest, "wb") as writer:
        while chunk := reader.read(COPY_CHUNK_BYTES):
            writer.write(chunk)
            done += len(chunk)
            if progress:
                progress(what, done, total)
    return done


def _relative_files(src: Path) -> list[str]:
    """Every file under a folder as a relative POSIX path, without descending into hidden folders (.git, .cache)."""
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(src)
        found.extend((base / name).as_posix() for name in files)
    return found


def _import_folder(src: Path, models_dir: Path, name: Optional[str], progress: Optional[Progress],
                   started: float) -> Acquired:
    """Copy a transformers folder's model files (the same choice a download makes) and write a manifest."""
    from agents.quantization.hf_quant import folder_manifest, write_manifest_inside
    from lqmf.base.source import require_hf_folder

    try:
        require_hf_folder(src)
    except LQMFError as exc:
        raise ModelNotFound(f"{src} is not a model: {exc.message}", exc.hint) from None
    layout = read_layout(src)  # a sentence-transformers model: its module folders belong to it
    names = pick_hf_files(_relative_files(src), layout.folders if layout is not None else ())
    final = models_dir / check_name(name or src.name)
    if final.exists():
        raise OutputExists(f"{final.name} already exists in {models_dir}",
                           f"import it under another name, e.g. `import {src} as {final.name}-2`")
    total = sum((src / n).stat().st_size for n in names)
    ensure_disk_space(models_dir, total + DISK_MARGIN_BYTES, final.name)
    with atomic_output(final, is_dir=True) as tmp:
        with measure_run() as measure:
            done = 0
            for file in names:
                done = _copy_with_progress(src / file, tmp / file, str(src), done, total, progress)
        record = inspect_folder(tmp)[0]
        manifest = folder_manifest(
            final, tmp, tmp, fmt=record.format if record.format != "unknown" else "hf", method="import",
            bits=record.bits or 0.0, level=record.level or "", measure=measure, packages=(),
            details={"files": names},
        )
        # The hash folder_manifest took is of the copied files, which are the source's model files.
        manifest.source = {**manifest.source, "path": str(src)}
        write_manifest_inside(tmp, manifest)
    log.info("imported %s -> %s", src, final)
    return Acquired(name=final.name, path=final, format=manifest.format, source=str(src), revision=None,
                    files=len(names), size_bytes=manifest.size_bytes,
                    wall_time_s=round(time.perf_counter() - started, 3))


def _import_gguf(src: Path, models_dir: Path, name: Optional[str], progress: Optional[Progress],
                 started: float) -> Acquired:
    """Copy a GGUF file (checked by its magic bytes) and write the manifest beside it."""
    from agents.quantization.gguf_quant import gguf_manifest, write_manifest_beside

    with open(src, "rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelNotFound(f"{src} is not a model: neither a folder nor a GGUF file (it does not start with 'GGUF')",
                            "give a Hugging Face model folder or a .gguf file")
    base = name or src.name
    final = models_dir / check_name(base if base.lower().endswith(".gguf") else f"{base}.gguf")
    if final.exists():
        raise OutputExists(f"{final.name} already exists in {models_dir}",
                           f"import it under another name, e.g. `import {src} as {final.stem}-2`")
    total = src.stat().st_size
    ensure_disk_space(models_dir, total + DISK_MARGIN_BYTES, final.name)
    with atomic_output(final) as tmp:
        with measure_run() as measure:
            _copy_with_progress(src, tmp, str(src), 0, total, progress)
        record = inspect_gguf(tmp, final.stem)
        if not record.usable:
            raise ModelNotFound(f"{src} is not a usable GGUF file: {record.reason}", "check the file is complete")
        manifest = gguf_manifest(
            final, tmp, method="import", level=record.level or "", bits=record.bits or 0.0,
            source={"path": str(src), "format": "gguf"}, measure=measure, packages=("gguf",),
        )
        manifest.source["sha256"] = manifest.weight_files[0].sha256  # the copy's hash is the source's
        write_manifest_beside(final, manifest)
    log.info("imported %s -> %s", src, final)
    return Acquired(name=final.name, path=final, format="gguf", source=str(src), revision=None, files=1,
                    size_bytes=manifest.size_bytes, wall_time_s=round(time.perf_counter() - started, 3))

