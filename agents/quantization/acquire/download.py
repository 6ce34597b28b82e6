"""Hub downloads: list the repo, pick the files, fetch them into a hidden staging folder, check, install.

Files finished before an interruption stay in the staging folder and are not fetched again; the
models folder never holds half a model (the finished entry is renamed into place with its manifest).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional

from agents.quantization.acquire.hub import RepoListing, check_repo_id, hub_endpoint, list_repo
from agents.quantization.acquire.hub_errors import hub_errors
from agents.quantization.acquire.placement import DISK_MARGIN_BYTES, Acquired, check_name
from agents.quantization.acquire.selection import Selection, select_files
from lqmf.base.atomic import atomic_output, ensure_disk_space
from lqmf.base.encoders import MODULES_FILE, parse_modules
from lqmf.base.errors import DownloadError, OutputExists
from lqmf.base.manifest import MANIFEST_NAME, Manifest, RunMeasure, measure_run, read_manifest
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings
from server.runtime.discovery import inspect_folder, inspect_gguf

log = logging.getLogger(__name__)

# Hidden (discovery skips it) and not a temp_sibling name (sweep_stale_temps keeps it for the next try).
STAGING_PREFIX = ".lqmf-download-"
HUB_METADATA_DIR = ".cache"  # what huggingface_hub keeps inside a local_dir


def download_model(repo_id: str, settings: Settings, *, name: Optional[str] = None, level: Optional[str] = None,
                   revision: Optional[str] = None, token: Optional[str] = None,
                   progress: Optional[Progress] = None) -> Acquired:
    """Download a safetensors model folder, or one GGUF file (by `level`), from the Hub into the models folder.

    `progress(what, done, total)` gets bytes on disk; it may be called from huggingface_hub's worker threads.
    """
    started = time.perf_counter()
    repo_id = check_repo_id(repo_id)
    endpoint = hub_endpoint()
    with hub_errors(endpoint, repo_id=repo_id, revision=revision, token=token):
        listing = list_repo(repo_id, endpoint, revision, token)
    selection = select_files(listing, level)
    models_dir = Path(settings.models_dir)
    final = models_dir / _target_name(repo_id, selection, name)
    if final.exists() or final.is_symlink():
        return _already_present(final, listing, selection, level, started)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f"{STAGING_PREFIX}{final.name}"
    what = repo_id if selection.format == "hf" else f"{repo_id}/{selection.files[0].path}"
    try:
        with hub_errors(endpoint, repo_id=repo_id, revision=revision, token=token):
            selection = _with_named_modules(listing, selection, staging, token, level)
    except BaseException:
        _discard_if_empty(staging)
        raise
    staged = _staged_bytes(staging, selection)
    ensure_disk_space(models_dir, selection.total_bytes - staged + DISK_MARGIN_BYTES, what)
    if progress:
        progress(what, staged, selection.total_bytes)
    try:
        with hub_errors(endpoint, repo_id=repo_id, revision=revision, token=token):
            bar_class = _progress_bar_class(what, selection.total_bytes, staged, progress)
            with measure_run() as measure:
                _fetch(listing, selection, staging, token, bar_class)
        install = _install_folder if selection.format == "hf" else _install_gguf
        manifest, warnings = install(staging, final, listing, selection, measure, revision)
    except BaseException:
        _discard_if_empty(staging)
        raise
    if progress:
        progress(what, selection.total_bytes, selection.total_bytes)
    log.info("downloaded %s@%s -> %s (%d files, %d bytes)", repo_id, listing.commit[:12], final,
             len(selection.files), manifest.size_bytes)
    return Acquired(
        name=final.name, path=final, format=manifest.format, source=repo_id, revision=listing.commit,
        files=len(selection.files), size_bytes=manifest.size_bytes,
        wall_time_s=round(time.perf_counter() - started, 3), warnings=warnings,
    )


def _target_name(repo_id: str, selection: Selection, name: Optional[str]) -> str:
    """The entry a download lands as: the repo's name part, or the GGUF file's name; `name` overrides."""
    if selection.format == "gguf":
        base = name or PurePosixPath(selection.files[0].path).name
        return check_name(base if base.lower().endswith(".gguf") else f"{base}.gguf")
    return check_name(name or repo_id.split("/")[-1])


def _already_present(
    final: Path, listing: RepoListing, selection: Selection, level: Optional[str], started: float
) -> Acquired:
    """The existing entry when it came from this repo at this commit, else OutputExists with the way out."""
    manifest = read_manifest(final) or {}
    source = manifest.get("source") or {}
    same_repo = str(source.get("hub", "")).lower() == listing.repo_id.lower()
    if same_repo and source.get("revision") == listing.commit:
        return Acquired(
            name=final.name, path=final, format=str(manifest.get("format") or selection.format),
            source=listing.repo_id, revision=listing.commit, files=len(selection.files),
            size_bytes=_disk_size(final), wall_time_s=round(time.perf_counter() - started, 3),
            already_present=True,
        )
    alt = f"{final.stem}-2.gguf" if final.suffix == ".gguf" else f"{final.name}-2"
    if same_repo:
        what = f"{final.name} already holds {listing.repo_id} at an older commit " \
               f"({str(source.get('revision'))[:12]}; the Hub now has {listing.commit[:12]})"
    else:
        came = f" (from {source['hub']})" if source.get("hub") else ""
        what = f"{final.name} already exists in {final.parent}{came}"
    again = " ".join(filter(None, ["download", listing.repo_id, level, "as", alt]))
    raise OutputExists(what, f"download it under another name, e.g. `{again}`, or delete {final} first")


def _disk_size(path: Path) -> int:
    """Bytes of a file, or of a folder's files without its manifest."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def _staged_bytes(staging: Path, selection: Selection) -> int:
    """Bytes of the selected files already complete in the staging folder (a resumed download skips them)."""
    return sum(f.size for f in selection.files if (staging / f.path).is_file()
               and (staging / f.path).stat().st_size == f.size)


def _progress_bar_class(what: str, total: int, start: int, progress: Optional[Progress]) -> type:
    """A tqdm stand-in for huggingface_hub that draws nothing and reports bytes written to `progress`."""
    lock = threading.Lock()
    byte_bars: list[Any] = []

    class ForwardingBar:
        """Counts like tqdm; the byte bars' largest count (bytes on disk) goes to the callback."""

        def __init__(self, *args: Any, total: Optional[float] = None, initial: float = 0, unit: str = "it",
                     **kwargs: Any) -> None:
            self.total, self.n, self.unit = total, initial or 0, unit
            self.format_dict: dict[str, Any] = {}
            if unit == "B":
                with lock:
                    byte_bars.append(self)

        def update(self, n: Optional[float] = 1) -> None:
            """Count `n` more; a byte bar reports the download's bytes on disk."""
            with lock:
                self.n += n or 0
                if self.unit != "B" or progress is None:
                    return
                # huggingface_hub feeds two byte bars (network, disk); the larger is what is on disk.
                done = start + int(max(bar.n for bar in byte_bars))
                progress(what, min(done, total), total)

        def __enter__(self) -> "ForwardingBar":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def __getattr__(self, attr: str) -> Callable[..., None]:
            # refresh, close, set_description, set_postfix_str, ...: nothing to draw.
            if attr.startswith("_"):
                raise AttributeError(attr)
            return lambda *args, **kwargs: None

    return ForwardingBar


def _fetch(listing: RepoListing, selection: Selection, staging: Path, token: Optional[str], bar_class: type) -> None:
    """Fetch exactly the selected files at the listed commit into `staging` (finished files are skipped)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import logging as hub_logging

    from lqmf.base.version import __version__

    # huggingface_hub prints retries ("Trying to resume download...") on its own stderr handler,
    # which would draw over the shell's progress bar: send them to our log file instead.
    hub_root = logging.getLogger("huggingface_hub")
    for handler in [h for h in hub_root.handlers if type(h) is logging.StreamHandler]:
        hub_root.removeHandler(handler)
    hub_logging.enable_propagation()
    staging.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        listing.repo_id,
        revision=listing.commit,  # a commit: no second look-up, and every file from the same snapshot
        local_dir=staging,
        allow_patterns=[glob.escape(f.path) for f in selection.files],  # exact names, not patterns
        endpoint=listing.endpoint,
        token=token,
        tqdm_class=bar_class,
        library_name="lqmf",
        library_version=__version__,
    )


def _with_named_modules(listing: RepoListing, selection: Selection, staging: Path, token: Optional[str],
                        level: Optional[str]) -> Selection:
    """A sentence-transformers repo: the selection with exactly the module folders its modules.json names.

    The first selection took folders by sentence-transformers' naming (1_Pooling, 2_Dense); modules.json,
    a few hundred bytes, is fetched first (into the staging folder, where the download keeps it) so that a
    folder named otherwise comes too and an unlisted look-alike does not.
    """
    if selection.format != "hf" or not any(f.path == MODULES_FILE for f in selection.files):
        return selection
    only = Selection("hf", tuple(f for f in selection.files if f.path == MODULES_FILE))
    _fetch(listing, only, staging, token, _progress_bar_class(MODULES_FILE, only.total_bytes, 0, None))
    try:
        modules = parse_modules((staging / MODULES_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return selection
    return select_files(listing, level, [m.path for m in modules if m.path])


def _verify_sizes(staging: Path, selection: Selection, repo_id: str) -> None:
    """Every selected file is in the staging folder at its listed size."""
    for f in selection.files:
        path = staging / f.path
        if not path.is_file() or path.stat().st_size != f.size:
            raise DownloadError(
                f"{f.path} of {repo_id} did not arrive complete",
                "run the same download again: the files finished so far are kept",
            )


def _verify_hashes(staging: Path, actual: dict[str, str], selection: Selection, repo_id: str) -> None:
    """The sha256 of fetched files (by repo path; computed for the manifest anyway) match the Hub's LFS hashes."""
    for f in selection.files:
        got = actual.get(f.path)
        if f.sha256 and got and got != f.sha256:
            (staging / f.path).unlink(missing_ok=True)  # so it is fetched again next time
            raise DownloadError(
                f"{f.path} of {repo_id} arrived corrupted (sha256 {got[:12]}, the Hub says {f.sha256[:12]})",
                "run the same download again",
            )


def _keep_only(staging: Path, selection: Selection) -> None:
    """Drop huggingface_hub's metadata and anything a previous attempt left that is not selected."""
    shutil.rmtree(staging / HUB_METADATA_DIR, ignore_errors=True)
    wanted = {f.path for f in selection.files}
    for path in sorted(staging.rglob("*"), reverse=True):  # children before their folders
        rel = path.relative_to(staging).as_posix()
        if path.is_dir() and not any(w.startswith(rel + "/") for w in wanted):
            shutil.rmtree(path, ignore_errors=True)
        elif not path.is_dir() and rel not in wanted:
            path.unlink(missing_ok=True)


def _hub_source(listing: RepoListing, file: Optional[str] = None) -> dict[str, Any]:
    """The manifest's `source` for something downloaded: repo, commit, endpoint and an hf:// address."""
    where = f"hf://{listing.repo_id}@{listing.commit}" + (f"/{file}" if file else "")
    return {"hub": listing.repo_id, "revision": listing.commit, "endpoint": listing.endpoint, "path": where}


def _install_folder(
    staging: Path, final: Path, listing: RepoListing, selection: Selection, measure: RunMeasure,
    revision: Optional[str],
) -> tuple[Manifest, list[str]]:
    """Check the fetched folder, write its manifest, rename it into place."""
    from agents.quantization.hf_quant import folder_manifest, write_manifest_inside

    _verify_sizes(staging, selection, listing.repo_id)
    _keep_only(staging, selection)
    record = inspect_folder(staging)[0]
    manifest = folder_manifest(
        final, staging, staging, fmt=record.format if record.format != "unknown" else "hf", method="download",
        bits=record.bits or 0.0, level=record.level or "", measure=measure, packages=("huggingface_hub",),
        details={"requested_revision": revision, "files": [f.path for f in selection.files],
                 "skipped_files": len(listing.files) - len(selection.files)},
    )
    _verify_hashes(staging, {w.path: w.sha256 for w in manifest.weight_files}, selection, listing.repo_id)
    manifest.source = {**manifest.source, **_hub_source(listing)}  # folder_manifest named the staging path
    write_manifest_inside(staging, manifest)
    warnings = [] if record.usable else [f"{final.name} is downloaded but cannot be served: {record.reason}"]
    for warning in warnings:
        log.warning(warning)
    with atomic_output(final) as tmp:
        os.replace(staging, tmp)
    return manifest, warnings


def _install_gguf(
    staging: Path, final: Path, listing: RepoListing, selection: Selection, measure: RunMeasure,
    revision: Optional[str],
) -> tuple[Manifest, list[str]]:
    """Check the fetched GGUF file, write the manifest beside its final place, rename it there."""
    from agents.quantization.gguf_quant import gguf_manifest, write_manifest_beside

    _verify_sizes(staging, selection, listing.repo_id)
    remote = selection.files[0]
    built = staging / remote.path
    record = inspect_gguf(built, final.stem)
    if not record.usable:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{remote.path} of {listing.repo_id} is not a usable GGUF file: {record.reason}",
                            "pick another file of the repo, or tell its owner")
    manifest = gguf_manifest(
        final, built, method="download", level=record.level or "", bits=record.bits or 0.0,
        source={**_hub_source(listing, remote.path), "format": "gguf"}, measure=measure,
        packages=("huggingface_hub", "gguf"), details={"requested_revision": revision, "file": remote.path},
    )
    _verify_hashes(staging, {remote.path: manifest.weight_files[0].sha256}, selection, listing.repo_id)
    if final.exists():
        raise OutputExists(f"{final} appeared while downloading", "download it again to another name")
    # Manifest first: a crash in between leaves a stray manifest (ignored), never a GGUF without one.
    write_manifest_beside(final, manifest)
    with atomic_output(final) as tmp:
        os.replace(built, tmp)
    shutil.rmtree(staging, ignore_errors=True)
    return manifest, []


def _discard_if_empty(staging: Path) -> None:
    """After a failure, remove a staging folder that holds no finished file (nothing to resume from)."""
    if not staging.is_dir():
        return
    metadata = staging / HUB_METADATA_DIR
    finished = [p for p in staging.rglob("*") if p.is_file() and metadata not in p.parents]
    if finished:
        log.info("keeping %d finished files in %s for the next try", len(finished), staging)
    else:
        shutil.rmtree(staging, ignore_errors=True)

