"""Sentence-embedding models read from their files: the sentence-transformers layout and encoder vs generator.

Standard library only: discovery, the factory's import and download, verify and fidelity all ask the same
questions (which subfolders belong to the model, how token states are pooled, is the vector normalised, is
this model an encoder), and a model's files are the only source of the answers.

sentence-transformers saves a model as a pipeline named by `modules.json`: module 0 is the transformer
(the folder itself), then `1_Pooling/config.json` (how token states become one vector), optionally
`2_Dense/` (a projection) and `2_Normalize` (L2 normalisation; it has no files, so its folder may be absent).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Optional

log = logging.getLogger(__name__)

EMBEDDING = "embedding"
GENERATION = "generation"
ROLES = (EMBEDDING, GENERATION)
MODULES_FILE = "modules.json"

# transformers model_type values of bidirectional encoders: their bare *Model (or *ForMaskedLM head) is what
# sentence-transformers wraps, and none of them generates text.
ENCODER_MODEL_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "distilbert", "camembert", "mpnet", "electra",
    "deberta", "deberta-v2", "albert", "modernbert", "nomic_bert", "nomic-bert", "jina_bert", "new", "neobert",
    "ernie", "luke", "xlnet", "funnel", "mobilebert", "squeezebert", "layoutlm", "t5encoder", "eurobert",
})
# llama.cpp's general.architecture values that are encoders (llama-arch.cpp): they embed, never decode a token.
GGUF_ENCODER_ARCHS = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert",
    "t5encoder", "eurobert",
})
# sentence-transformers' Pooling config: the boolean flags of older versions, and the names llama.cpp knows.
POOLING_FLAGS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
POOLINGS = tuple(name for _, name in POOLING_FLAGS)
# What llama.cpp can pool (its converter refuses the rest): a GGUF of another pooling cannot be made faithfully.
LLAMA_CPP_POOLINGS = frozenset({"mean", "cls", "lasttoken"})
# sentence-transformers' module folders are named "<index>_<Class>" (1_Pooling, 2_Dense, 2_Normalize):
# the download side uses this before modules.json itself is on disk.
MODULE_FOLDER = re.compile(r"^\d+_[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SentenceModule:
    """One entry of modules.json: its folder ('' for the model folder itself) and its class name."""

    path: str
    kind: str  # the class name without its package: Transformer, Pooling, Dense, Normalize, ...


@dataclass(frozen=True)
class SentenceLayout:
    """A folder's sentence-transformers pipeline as its files describe it."""

    modules: tuple[SentenceModule, ...]
    pooling: str  # one of POOLINGS; "mean" when no Pooling module says otherwise (transformers' usual choice)
    normalize: bool  # a Normalize module is listed (its folder may be absent: it has no files)
    dense: tuple[str, ...]  # Dense projection folders, in order (applied after pooling)

    @property
    def folders(self) -> tuple[str, ...]:
        """The subfolders that belong to the model (every listed module path but the folder itself)."""
        return tuple(m.path for m in self.modules if m.path)


def parse_modules(text: str) -> tuple[SentenceModule, ...]:
    """modules.json's entries; paths that would leave the folder are dropped (a file never decides where we read)."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError:
        return ()
    modules = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        path = str(entry.get("path") or "").strip().strip("/")
        parts = PurePosixPath(path).parts
        if path and (path.startswith("/") or any(p in ("..", ".") or p.startswith(".") for p in parts)):
            continue
        modules.append(SentenceModule(path, str(entry.get("type") or "").rsplit(".", 1)[-1]))
    return tuple(modules)


def pooling_mode(config: dict[str, Any]) -> str:
    """The pooling a Pooling module's config.json names (the newer `pooling_mode` or the older flags)."""
    named = str(config.get("pooling_mode") or "").lower()
    if named in POOLINGS:
        return named
    for flag, name in POOLING_FLAGS:
        if config.get(flag):
            return name
    return "mean"


def read_layout(folder: Path) -> Optional[SentenceLayout]:
    """The sentence-transformers layout of an HF folder, or None when it has no modules.json."""
    folder = Path(folder)
    path = folder / MODULES_FILE
    if not path.is_file():
        return None
    try:
        modules = parse_modules(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    pooling = "mean"
    for module in modules:
        config = folder / module.path / "config.json"
        if module.kind == "Pooling" and module.path and config.is_file():
            try:
                pooling = pooling_mode(json.loads(config.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as exc:
                # Readable enough to serve; said, because the vectors then pool by the default, not the config.
                log.warning("%s is unreadable (%s): pooling by the default, mean", config, exc)
    return SentenceLayout(
        modules=modules, pooling=pooling,
        normalize=any(m.kind == "Normalize" for m in modules),
        dense=tuple(m.path for m in modules if m.kind == "Dense" and m.path),
    )


def in_module_folder(path: str, folders: Iterable[str]) -> bool:
    """True when a relative file path lies inside one of the module folders."""
    return any(path.startswith(folder.rstrip("/") + "/") for folder in folders)


def conventional_folders(paths: Iterable[str]) -> tuple[str, ...]:
    """Module folders by sentence-transformers' naming (1_Pooling, 2_Dense): for a listing without modules.json read."""
    firsts = {PurePosixPath(p).parts[0] for p in paths if "/" in p}
    return tuple(sorted(f for f in firsts if MODULE_FOLDER.match(f)))


def hf_role(config: dict[str, Any], has_modules_json: bool) -> str:
    """embedding or generation, from config.json and whether sentence-transformers' modules.json is there.

    modules.json makes any model an embedding model (decoder-based ones such as Qwen3-Embedding too); without
    it, a known encoder model_type is one unless its architecture is a causal-LM head.
    """
    if has_modules_json:
        return EMBEDDING
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForCausalLM") for a in archs) or config.get("is_decoder"):
        return GENERATION
    model_type = str(config.get("model_type") or "").lower()
    return EMBEDDING if model_type in ENCODER_MODEL_TYPES else GENERATION


def gguf_role(architecture: Optional[str], pooling_type: Optional[int], causal: Optional[bool]) -> str:
    """embedding or generation from a GGUF's metadata: an encoder architecture, a pooling type, or causal false."""
    if (architecture or "") in GGUF_ENCODER_ARCHS or causal is False:
        return EMBEDDING
    # llama.cpp's pooling types: 0 none, 1 mean, 2 cls, 3 last, 4 rank (a reranker: also not a generator).
    return EMBEDDING if pooling_type not in (None, 0, -1) else GENERATION


def is_encoder_model_type(model_type: Optional[str]) -> bool:
    """True for a bidirectional encoder (BERT family): what GPTQModel and causal-LM loaders cannot take."""
    return str(model_type or "").lower() in ENCODER_MODEL_TYPES
