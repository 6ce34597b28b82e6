"""Atomic outputs: build in a hidden temporary sibling, rename into place only when complete."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lqmf.base.errors import InsufficientDisk, OutputExists
from lqmf.base.processes import pid_alive

log = logging.getLogger(__name__)

TEMP_MARKER = ".lqmf-tmp-"


def temp_sibling(final: Path) -> Path:
    """A hidden name next to `final` that discovery ignores and that records the owning pid."""
    return final.parent / f".{final.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_temp_name(name: str) -> bool:
    """True for names made by temp_sibling (never a finished model)."""
    return name.startswith(".") and TEMP_MARKER in name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


@contextmanager
def atomic_output(final: Path, *, overwrite: bool = False, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path to build `final` in; rename it into place only if the body succeeds.

    On any exception (KeyboardInterrupt included) the temporary is removed and `final` is untouched.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise OutputExists(f"{final} already exists", "choose another name or pass overwrite=True")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the build produced nothing at {tmp}")
        _fsync_tree(tmp)
        if final.exists():
            # Keep the old output until the new one is in place, so a crash loses neither.
            old = temp_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def sweep_stale_temps(folder: Path) -> list[Path]:
    """Remove temporaries left by runs whose process is gone (killed mid-run); return them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not is_temp_name(entry.name):
            continue
        pid_part = entry.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        if pid_part.isdigit() and pid_alive(int(pid_part)):
            continue
        log.info("removing stale temporary %s", entry)
        _remove(entry)
        removed.append(entry)
    return removed


def ensure_disk_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse before work starts when `folder`'s filesystem cannot hold `needed_bytes`."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise InsufficientDisk(
            f"not enough disk for {what}: needs about {needed_bytes / 2**20:.0f} MiB, "
            f"{free / 2**20:.0f} MiB free on {probe}",
            "free some space or point LQMF_MODELS_DIR at a larger disk",
        )
