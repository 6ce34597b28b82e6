"""Which files make a model: a transformers folder's weights and support files, or one GGUF file of a level."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Optional

from agents.quantization.acquire.hub import RemoteFile, RepoListing
from lqmf.base.encoders import MODULES_FILE, conventional_folders, in_module_folder
from lqmf.base.errors import DownloadError
from lqmf.base.manifest import MANIFEST_NAME
from lqmf.base.units import format_bytes
from server.runtime.discovery import GGUF_LEVEL_IN_NAME

# Besides the weights, a transformers folder needs its config, tokenizer and generation files.
SUPPORT_SUFFIXES = (".json", ".jinja", ".tiktoken", ".model")
SUPPORT_NAMES = frozenset({"merges.txt", "vocab.txt"})
SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}$")
# Files with .gguf names that are not models on their own: vision projectors, importance matrices.
AUX_GGUF = re.compile(r"mmproj|imatrix", re.I)


@dataclass(frozen=True)
class Selection:
    """What a download will fetch: a transformers folder or one GGUF file."""

    format: str  # hf | gguf
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of every selected file."""
        return sum(f.size for f in self.files)


def pick_hf_files(paths: Iterable[str], module_folders: Optional[Iterable[str]] = None) -> list[str]:
    """The files of a transformers folder worth having: top-level safetensors plus config/tokenizer files,
    and a sentence-transformers model's module folders (1_Pooling/, 2_Dense/, ...).

    `module_folders` are the folders modules.json names; None: when modules.json is among `paths`, the
    folders named the way sentence-transformers names them. Other subfolders (onnx/, openvino/ exports)
    are never taken.
    """
    paths = [p for p in paths if not any(part.startswith(".") for part in PurePosixPath(p).parts)]
    top = [p for p in paths if "/" not in p]
    weights = [p for p in top if p.endswith(".safetensors")]
    # Mistral repos ship consolidated*.safetensors (their own layout) beside the transformers shards.
    weights = [p for p in weights if not p.startswith("consolidated")] or weights
    if module_folders is None:
        module_folders = conventional_folders(paths) if MODULES_FILE in top else ()
    folders = tuple(module_folders)
    modules = [p for p in paths if "/" in p and in_module_folder(p, folders)]
    return sorted(weights + [p for p in top if _is_support_file(p)] + _module_files(modules))


def _module_files(paths: list[str]) -> list[str]:
    """A module folder's config and weights: safetensors where it has them, else its pytorch_model.bin."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(str(PurePosixPath(path).parent), []).append(path)
    kept: list[str] = []
    for files in by_folder.values():
        has_safetensors = any(f.endswith(".safetensors") for f in files)
        for f in files:
            name = PurePosixPath(f).name
            if _is_support_file(name) or name.endswith(".safetensors") or name in SUPPORT_NAMES or (
                    name.endswith(".bin") and not has_safetensors):
                kept.append(f)
    return kept


def _is_support_file(name: str) -> bool:
    """True for the config, tokenizer and generation files a transformers folder needs beside its weights."""
    if name == MANIFEST_NAME:  # an LQMF manifest from elsewhere describes another copy; we write our own
        return False
    if name.endswith(".index.json"):  # only the index of the weights we take, not of .bin / .h5 ones
        return name.endswith(".safetensors.index.json")
    return name.endswith(SUPPORT_SUFFIXES) or name in SUPPORT_NAMES


def select_files(listing: RepoListing, level: Optional[str],
                 module_folders: Optional[Iterable[str]] = None) -> Selection:
    """Choose what to fetch: the safetensors folder, else the GGUF file of `level`; refuse anything else.

    `module_folders`: the folders a sentence-transformers repo's modules.json names (see pick_hf_files).
    """
    repo_id = listing.repo_id
    by_path = {f.path: f for f in listing.files}
    has_safetensors = any("/" not in p and p.endswith(".safetensors") for p in by_path)
    ggufs = [f for f in listing.files if f.path.lower().endswith(".gguf") and not AUX_GGUF.search(f.path)]
    # A level only means something for GGUF files: with one given, a repo holding both gets its GGUF.
    if has_safetensors and not level:
        names = pick_hf_files(by_path, module_folders)
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
    choices = ", ".join(f"{f.path} ({format_bytes(f.size)})" for f in sorted(ggufs, key=lambda f: f.path))
    if level:
        why = f"{len(matches)} GGUF files of {repo_id} match level {level!r}" if matches else \
            f"no GGUF file of {repo_id} matches level {level!r}"
    else:
        why = f"{repo_id} has {len(ggufs)} GGUF files; say which level to download"
    levels = [m.group("level").lower() for f in ggufs if (m := GGUF_LEVEL_IN_NAME.search(_gguf_stem(f.path)))]
    example = f"download {repo_id} {levels[0]}" if levels else f"download {repo_id} LEVEL"
    raise DownloadError(f"{why}. Available: {choices}", f"pick one by its level, e.g. `{example}`")

