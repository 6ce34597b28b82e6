"""Acquire models: download from the Hugging Face Hub, import local files, log in to the Hub.

A download lists the repo, picks the files LQMF can use (a safetensors folder, or one GGUF file),
fetches them with huggingface_hub into a hidden staging folder inside the models folder, writes an
LQMF manifest and renames the result into place, so the models folder never holds half a model.
Files finished before an interruption stay in the staging folder and are not fetched again.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Optional

from lqmf.atomic import atomic_output, ensure_disk_space
from lqmf.manifest import (
    MANIFEST_NAME,
    MANIFEST_SUFFIX,
    Manifest,
    RunMeasure,
    measure_run,
    read_manifest,
)
from lqmf.errors import AccessDenied, DownloadError, InsufficientDisk, LQMFError, ModelNotFound, OutputExists
from lqmf.settings import PROJECT_ROOT, Settings
from server.discovery import GGUF_LEVEL_IN_NAME, GGUF_MAGIC, inspect_folder, inspect_gguf

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID_EXAMPLE = "Qwen/Qwen2.5-0.5B-Instruct"
# Hidden (discovery skips it) and not a temp_sibling name (sweep_stale_temps keeps it for the next try).
STAGING_PREFIX = ".lqmf-download-"
HUB_METADATA_DIR = ".cache"  # what huggingface_hub keeps inside a local_dir
DISK_MARGIN_BYTES = 16 << 20
COPY_CHUNK_BYTES = 8 << 20
# Besides the weights, a transformers folder needs its config, tokenizer and generation files.
SUPPORT_SUFFIXES = (".json", ".jinja", ".tiktoken", ".model")
SUPPORT_NAMES = frozenset({"merges.txt", "vocab.txt"})
SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}$")
# Files with .gguf names that are not models on their own: vision projectors, importance matrices.
AUX_GGUF = re.compile(r"mmproj|imatrix", re.I)


@dataclass
class Acquired:
    """A model placed in the models folder by a download or an import."""

    name: str
    path: Path
    format: str  # hf | gguf (a pre-quantized folder: what discovery reads, e.g. gptq)
    source: str  # repo id, or the original absolute path
    revision: Optional[str]  # commit sha for downloads
    files: int
    size_bytes: int
    wall_time_s: float
    already_present: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repo as the tree listing describes it."""

    path: str
    size: int
    sha256: Optional[str] = None  # known for git-lfs files


@dataclass(frozen=True)
class RepoListing:
    """A repo pinned to one commit, with every file in it."""

    repo_id: str
    commit: str
    endpoint: str
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class Selection:
    """What a download will fetch: a transformers folder or one GGUF file."""

    format: str  # hf | gguf
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of every selected file."""
        return sum(f.size for f in self.files)


# -- public API --------------------------------------------------------------------------------------


def hub_endpoint() -> str:
    """The Hub to talk to: HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or DEFAULT_ENDPOINT


def download_model(
    repo_id: str,
    settings: Settings,
    *,
    name: Optional[str] = None,
    level: Optional[str] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> Acquired:
    """Download a safetensors model folder, or one GGUF file (by `level`), from the Hub into the models folder.

    `progress(what, done, total)` gets bytes on disk; it may be called from huggingface_hub's worker threads.
    """
    started = time.perf_counter()
    repo_id = check_repo_id(repo_id)
    endpoint = hub_endpoint()
    with _hub_errors(endpoint, repo_id=repo_id, revision=revision, token=token):
        listing = _list_repo(repo_id, endpoint, revision, token)
    selection = select_files(listing, level)
    models_dir = Path(settings.models_dir)
    final = models_dir / _target_name(repo_id, selection, name)
    if final.exists() or final.is_symlink():
        return _already_present(final, listing, selection, level, started)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f"{STAGING_PREFIX}{final.name}"
    what = repo_id if selection.format == "hf" else f"{repo_id}/{selection.files[0].path}"
    staged = _staged_bytes(staging, selection)
    ensure_disk_space(models_dir, selection.total_bytes - staged + DISK_MARGIN_BYTES, what)
    if progress:
        progress(what, staged, selection.total_bytes)
    try:
        with _hub_errors(endpoint, repo_id=repo_id, revision=revision, token=token):
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


def login(token: str, settings: Optional[Settings] = None) -> str:
    """Check a Hub token and save it in huggingface_hub's own token store (under HF_HOME); return the account name."""
    token = (token or "").strip()
    endpoint = hub_endpoint()
    if not token:
        raise AccessDenied("no token given", f"make a read token at {endpoint}/settings/tokens and log in with it")
    _refuse_token_store_inside(settings)
    from huggingface_hub import HfApi
    from huggingface_hub import login as hub_login

    with _hub_errors(endpoint, token=token, logging_in=True):
        # Checked here against the endpoint of this moment; huggingface_hub.login checks it again
        # against the endpoint it was imported with (the same one unless HF_ENDPOINT changed since).
        account = HfApi(endpoint=endpoint).whoami(token=token)
        # Stores the token where every huggingface_hub user finds it; never in git credentials.
        hub_login(token=token, add_to_git_credential=False)
    name = str(account.get("name") or "")
    log.info("logged in to %s as %s", endpoint, name)
    return name


# -- repo ids, listings and file choice ------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """The repo id in canonical form (a pasted Hub URL is accepted), or a DownloadError saying what one looks like."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = (repo_id or "").strip()
    for prefix in (hub_endpoint() + "/", DEFAULT_ENDPOINT + "/", "hf://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.strip("/")
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise DownloadError(
            f"{repo_id!r} is not a Hugging Face repo id",
            f"a repo id is ORG/NAME as on its Hub page, e.g. {REPO_ID_EXAMPLE}",
        ) from None
    return text


def _list_repo(repo_id: str, endpoint: str, revision: Optional[str], token: Optional[str]) -> RepoListing:
    """Resolve the revision to a commit and list every file in the repo at it (sizes, LFS hashes)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token, library_name="lqmf")
    info = api.model_info(repo_id, revision=revision)
    commit = str(info.sha)
    files = tuple(
        RemoteFile(entry.path, int(entry.size), entry.lfs.sha256 if entry.lfs is not None else None)
        for entry in api.list_repo_tree(repo_id, recursive=True, revision=commit)
        if isinstance(entry, RepoFile)
    )
    return RepoListing(repo_id, commit, endpoint, files)


def pick_hf_files(paths: Iterable[str]) -> list[str]:
    """The files of a transformers folder worth having: top-level safetensors plus config/tokenizer files."""
    top = [p for p in paths if "/" not in p and not p.startswith(".")]
    weights = [p for p in top if p.endswith(".safetensors")]
    # Mistral repos ship consolidated*.safetensors (their own layout) beside the transformers shards.
    weights = [p for p in weights if not p.startswith("consolidated")] or weights
    return sorted(weights + [p for p in top if _is_support_file(p)])


def _is_support_file(name: str) -> bool:
    """True for the config, tokenizer and generation files a transformers folder needs beside its weights."""
    if name == MANIFEST_NAME:  # an LQMF manifest from elsewhere describes another copy; we write our own
        return False
    if name.endswith(".index.json"):  # only the index of the weights we take, not of .bin / .h5 ones
        return name.endswith(".safetensors.index.json")
    return name.endswith(SUPPORT_SUFFIXES) or name in SUPPORT_NAMES


def select_files(listing: RepoListing, level: Optional[str]) -> Selection:
    """Choose what to fetch: the safetensors folder, else the GGUF file of `level`; refuse anything else."""
    repo_id = listing.repo_id
    by_path = {f.path: f for f in listing.files}
    has_safetensors = any("/" not in p and p.endswith(".safetensors") for p in by_path)
    ggufs = [f for f in listing.files if f.path.lower().endswith(".gguf") and not AUX_GGUF.search(f.path)]
    # A level only means something for GGUF files: with one given, a repo holding both gets its GGUF.
    if has_safetensors and not level:
        names = pick_hf_files(by_path)
        if "config.json" not in names:
            raise DownloadError(
                f"{repo_id} has safetensors weights but no config.json, so it is not a transformers model "
                "(an adapter, or weights for another library?)",
                "download the full model it belongs to",
            )
        return Selection("hf", tuple(by_path[n] for n in names))
    if ggufs:
        return Selection("gguf", (_pick_gguf(repo_id, ggufs, level),))
    if has_safetensors:  # a level was asked for, but there is no GGUF to pick it from
        raise DownloadError(
            f"{repo_id} has no GGUF files, so there is no {level} file to download",
            f"download it without a level to get its safetensors, then quantize it to {level}",
        )
    sample = ", ".join(sorted(p for p in by_path if not p.startswith("."))[:8]) or "no files"
    raise DownloadError(
        f"{repo_id} has no .safetensors or .gguf files (it has: {sample}); "
        "only safetensors or GGUF repos can be used",
        f"look on the Hub for a safetensors or GGUF version of it (e.g. search '{repo_id.split('/')[-1]} GGUF')",
    )


def _gguf_stem(path: str) -> str:
    """A GGUF file's name without .gguf and without a split suffix (-00001-of-00003)."""
    return SPLIT_GGUF.sub("", PurePosixPath(path).name[: -len(".gguf")])


def _level_matches(path: str, level: str) -> bool:
    """True when the file's name carries `level` as a whole token (q4_k does not match q4_k_m)."""
    pattern = rf"(?:^|[-_.]){re.escape(level.strip().lower())}(?:$|[-.])"
    return re.search(pattern, _gguf_stem(path).lower()) is not None


def _pick_gguf(repo_id: str, ggufs: list[RemoteFile], level: Optional[str]) -> RemoteFile:
    """The one GGUF file `level` names (or the only one), else a DownloadError listing the choices."""
    matches = [f for f in ggufs if _level_matches(f.path, level)] if level else (ggufs if len(ggufs) == 1 else [])
    if len(matches) == 1 and not SPLIT_GGUF.search(PurePosixPath(matches[0].path).stem):
        return matches[0]
    if matches and all(SPLIT_GGUF.search(PurePosixPath(f.path).stem) for f in matches):
        raise DownloadError(
            f"the {level or 'only'} GGUF of {repo_id} is split into {len(matches)} parts",
            "LQMF loads single-file GGUF models: pick another level, or download the parts yourself and "
            "join them with llama.cpp's `llama-gguf-split --merge`, then import the result",
        )
    choices = ", ".join(f"{f.path} ({_mib(f.size)})" for f in sorted(ggufs, key=lambda f: f.path))
    if level:
        why = f"{len(matches)} GGUF files of {repo_id} match level {level!r}" if matches else \
            f"no GGUF file of {repo_id} matches level {level!r}"
    else:
        why = f"{repo_id} has {len(ggufs)} GGUF files; say which level to download"
    levels = [m.group("level").lower() for f in ggufs if (m := GGUF_LEVEL_IN_NAME.search(_gguf_stem(f.path)))]
    example = f"download {repo_id} {levels[0]}" if levels else f"download {repo_id} LEVEL"
    raise DownloadError(f"{why}. Available: {choices}", f"pick one by its level, e.g. `{example}`")


def _check_name(name: str) -> str:
    """A model name that is one visible entry of the models folder."""
    name = name.strip()
    if not name or name.startswith(".") or "/" in name or "\\" in name or name.endswith(MANIFEST_SUFFIX):
        raise LQMFError(f"{name!r} cannot be a model name",
                        "use letters, digits, '-', '_' and '.', not starting with '.'")
    return name


def _target_name(repo_id: str, selection: Selection, name: Optional[str]) -> str:
    """The entry a download lands as: the repo's name part, or the GGUF file's name; `name` overrides."""
    if selection.format == "gguf":
        base = name or PurePosixPath(selection.files[0].path).name
        return _check_name(base if base.lower().endswith(".gguf") else f"{base}.gguf")
    return _check_name(name or repo_id.split("/")[-1])


# -- the download itself ----------------------------------------------------------------------------


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
    import lqmf
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import logging as hub_logging

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
        library_version=lqmf.__version__,
    )


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


# -- errors from the Hub, explained -----------------------------------------------------------------


def _token_origin(token: Optional[str]) -> Optional[str]:
    """Where the token huggingface_hub sent came from, in words (None: no token was sent)."""
    if token:
        return "the token given"
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "the token in HF_TOKEN"
    from huggingface_hub import get_token

    return "the token saved by `login`" if get_token() else None


@contextmanager
def _hub_errors(
    endpoint: str, *, repo_id: Optional[str] = None, revision: Optional[str] = None,
    token: Optional[str] = None, logging_in: bool = False,
) -> Iterator[None]:
    """Turn huggingface_hub and network errors into LQMF errors whose hint says what to do."""
    try:
        yield
    except LQMFError:
        raise
    except Exception as exc:
        explained = _explain(exc, endpoint, repo_id, revision, token, logging_in)
        if explained is None:
            raise
        log.debug("Hub error explained as %r", explained, exc_info=True)
        raise explained from exc


def _explain(
    exc: Exception, endpoint: str, repo_id: Optional[str], revision: Optional[str], token: Optional[str],
    logging_in: bool,
) -> Optional[LQMFError]:
    """The LQMF error for one huggingface_hub / network error, or None when it is not one of those."""
    import httpx2
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = repo_id or "the repo"
    tokens_page = f"{endpoint}/settings/tokens"
    how_to_login = "log in with `login` and a token of an account that can read it (or set HF_TOKEN)"
    if isinstance(exc, GatedRepoError):
        origin = _token_origin(token)
        hint = (f"then use a token of the account that accepted it: {how_to_login}" if origin else
                f"then make a read token at {tokens_page} and log in with `login` (or set HF_TOKEN)")
        return AccessDenied(f"{repo} is gated: accept its licence at {endpoint}/{repo}", hint)
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"{repo} has no revision {revision!r}",
                             f"use a branch, tag or commit listed at {endpoint}/{repo}/commits/main, "
                             "or leave the revision out for the latest")
    if isinstance(exc, DisabledRepoError):
        return DownloadError(f"{repo} has been disabled on the Hub", "pick another repo")
    if isinstance(exc, RepositoryNotFoundError):
        origin = _token_origin(token)
        if origin:
            return DownloadError(f"{repo} was not found on {endpoint}, or {origin} cannot read it",
                                 f"check the spelling (ORG/NAME, e.g. {REPO_ID_EXAMPLE}); "
                                 "for a private repo use a token of an account with access")
        return DownloadError(f"{repo} was not found on {endpoint}, or it is private",
                             f"check the spelling (ORG/NAME, e.g. {REPO_ID_EXAMPLE}); for a private repo, "
                             f"{how_to_login}")
    if isinstance(exc, RemoteEntryNotFoundError):
        return DownloadError(f"a file of {repo} vanished from the Hub during the download", "run it again")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return _explain_status(status, endpoint, repo, token, logging_in, tokens_page)
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("huggingface_hub is in offline mode (HF_HUB_OFFLINE is set)", "unset HF_HUB_OFFLINE")
    if isinstance(exc, (LocalEntryNotFoundError, httpx2.TransportError, ConnectionError, TimeoutError)):
        cause = exc.__cause__ or exc
        return DownloadError(
            f"could not reach the Hub at {endpoint} ({type(cause).__name__}: {str(cause)[:200]})",
            "check the network connection, or set HF_ENDPOINT to a Hub mirror you can reach; "
            "a download that stopped goes on from its finished files",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return InsufficientDisk(f"the disk filled up while downloading {repo}", "free some space and run it again")
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return DownloadError(f"a file of {repo} arrived with the wrong size", "run the same download again")
    if isinstance(exc, ValueError) and not logging_in:
        return DownloadError(f"could not download {repo}: {exc}", "see logs/lqmf.log")
    if isinstance(exc, ValueError):  # huggingface_hub refuses organization tokens this way
        return AccessDenied(f"the token cannot log in: {exc}", f"make a personal read token at {tokens_page}")
    return None


def _explain_status(
    status: int, endpoint: str, repo: str, token: Optional[str], logging_in: bool, tokens_page: str
) -> LQMFError:
    """The LQMF error for an HTTP status the Hub answered with."""
    origin = "the token" if logging_in else _token_origin(token)
    if status == 401 and origin:
        env = "; HF_TOKEN wins over a saved token, so fix or unset it" if "HF_TOKEN" in origin else ""
        return AccessDenied(f"the Hub at {endpoint} refused {origin}",
                            f"it is wrong, expired or revoked: make a new read token at {tokens_page}, "
                            f"then log in with it (`login`){env}")
    if status == 401:
        return AccessDenied(f"{repo} needs a Hub token",
                            f"make a read token at {tokens_page} and log in with it (`login`), or set HF_TOKEN")
    if status == 403:
        return AccessDenied(f"the Hub at {endpoint} refused access to {repo}",
                            "use a token with read access to it (a fine-grained token may not cover this repo)")
    if status == 429:
        return DownloadError(f"the Hub at {endpoint} is rate-limiting these requests", "wait a minute and try again")
    return DownloadError(f"the Hub at {endpoint} answered HTTP {status} for {repo}",
                         "try again later; a download that stopped goes on from its finished files")


def _refuse_token_store_inside(settings: Optional[Settings]) -> None:
    """Refuse to log in when huggingface_hub's token store would land in the project or models folder."""
    from huggingface_hub import constants

    store = Path(constants.HF_TOKEN_PATH).expanduser().resolve()
    folders = [PROJECT_ROOT] + ([Path(settings.models_dir)] if settings is not None else [])
    for folder in folders:
        if store.is_relative_to(folder.resolve()):
            raise LQMFError(
                f"huggingface_hub would save the token at {store}, inside {folder}",
                "set HF_HOME (or HF_TOKEN_PATH) to a folder outside it, e.g. ~/.cache/huggingface",
            )


# -- imports -----------------------------------------------------------------------------------------


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


def _import_folder(src: Path, models_dir: Path, name: Optional[str], progress: Optional[Progress],
                   started: float) -> Acquired:
    """Copy a transformers folder's model files (the same choice a download makes) and write a manifest."""
    from agents.quantization.hf_quant import folder_manifest, write_manifest_inside
    from lqmf.source import require_hf_folder

    try:
        require_hf_folder(src)
    except LQMFError as exc:
        raise ModelNotFound(f"{src} is not a model: {exc.message}", exc.hint) from None
    names = pick_hf_files(p.name for p in src.iterdir() if p.is_file())
    final = models_dir / _check_name(name or src.name)
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
    final = models_dir / _check_name(base if base.lower().endswith(".gguf") else f"{base}.gguf")
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


# -- small helpers -----------------------------------------------------------------------------------


def _mib(size: int) -> str:
    """A byte count for people: MiB, or GiB from 1 GiB up."""
    return f"{size / 2**20:.1f} MiB" if size < 2**30 else f"{size / 2**30:.2f} GiB"


def _disk_size(path: Path) -> int:
    """Bytes of a file, or of a folder's files without its manifest."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
