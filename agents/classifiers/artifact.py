"""A saved classifier: $LQMF_HOME/classifiers/NAME/ with model.skops, eval.jsonl and manifest.json.

Never pickle: the pipeline is written with skops, and read back only after (1) its bytes match the
sha256 the manifest recorded and (2) skops' audit of the types it would build finds none beyond
scikit-learn's own trusted set and the two calibration helpers listed here. The folder is built in a
hidden temporary and renamed into place, so a classifier is whole or absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from agents.classifiers.chance import ChanceVerdict, for_manifest
from agents.classifiers.errors import ClassifierNotFound, ClassifierRefused, DataError
from lqmf.base.atomic import atomic_output, is_temp_name
from lqmf.base.manifest import tool_versions

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
EVAL_FILE = "eval.jsonl"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_+\-]*(\.[A-Za-z0-9_+\-]+)*$"
NAME_MAX = 100
# Types skops does not trust by default that the SVM pipeline needs: scikit-learn's own calibration helpers.
TRUSTED_EXTRA = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")
LIBRARIES = ("scikit-learn", "skops", "numpy", "scipy")


def classifiers_dir(settings) -> Path:
    """Where classifiers live: under LQMF_HOME, beside the models folder and the database."""
    return settings.root / "classifiers"


def check_name(name: str) -> str:
    """A classifier's name: letters, digits and . _ + - (never a path)."""
    if not name or len(name) > NAME_MAX or not re.match(NAME_PATTERN, name):
        raise DataError(f"{name!r} is not a classifier name",
                        f"use letters, digits and . _ + - (at most {NAME_MAX} characters), e.g. code-vs-prose")
    return name


@dataclass(frozen=True)
class EmbeddingSpec:
    """The embedding model a classifier was trained on, and how its vectors were made."""

    model: str
    sha256: str
    format: str
    level: Optional[str]
    dim: int
    pooling: str
    normalized: bool
    truncate: bool


@dataclass
class ClassifierManifest:
    """manifest.json: everything needed to trust, reproduce and check a classifier."""

    name: str
    embedding: EmbeddingSpec
    labels: list[str]
    data: dict[str, Any]
    pipeline: dict[str, Any]
    split: dict[str, Any]
    cv: dict[str, Any]
    holdout: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    library_versions: dict[str, str] = field(default_factory=lambda: tool_versions(*LIBRARIES))
    embedding_run: dict[str, Any] = field(default_factory=dict)
    # The cross-validated accuracy against chance (chance.py): its inputs and verdict; {} when saved before it was.
    chance: dict[str, Any] = field(default_factory=dict)
    experiment_id: Optional[int] = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierManifest":
        values = dict(data)
        values["embedding"] = EmbeddingSpec(**values["embedding"])
        return cls(**values)

    def verdict(self) -> ChanceVerdict:
        """Whether its cross-validated accuracy is clearly above chance (computed from what the manifest holds)."""
        return for_manifest(self)

    def summary(self) -> dict[str, Any]:
        """The facts a listing shows."""
        verdict = self.verdict()
        return {"name": self.name, "model": self.embedding.model, "model_sha256": self.embedding.sha256,
                "dim": self.embedding.dim, "labels": self.labels, "algorithm": self.pipeline.get("algorithm"),
                "pca": self.pipeline.get("pca"), "rows": self.data.get("rows"),
                "cv_accuracy": self.cv.get("accuracy"), "cv_f1_macro": self.cv.get("f1_macro"),
                "holdout_accuracy": self.holdout.get("accuracy"), "created_at": self.created_at,
                **verdict.fields(), "chance": verdict.to_dict()}


@dataclass(frozen=True)
class EvalRow:
    """One held-out row: where it came from, its text and its label."""

    line: int
    text: str
    label: str


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_classifier(folder: Path, pipeline: Any, manifest: ClassifierManifest, eval_rows: list[EvalRow]) -> Path:
    """Write the classifier folder atomically (replacing an older one only once the new one is whole)."""
    import skops.io as sio

    buffer = io.BytesIO()
    sio.dump(pipeline, buffer)
    model_bytes = buffer.getvalue()
    eval_bytes = "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in eval_rows).encode("utf-8")
    manifest.files = {MODEL_FILE: _sha(model_bytes), EVAL_FILE: _sha(eval_bytes)}
    with atomic_output(folder, overwrite=True, is_dir=True) as tmp:
        (tmp / MODEL_FILE).write_bytes(model_bytes)
        (tmp / EVAL_FILE).write_bytes(eval_bytes)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    log.info("saved classifier %s in %s", manifest.name, folder)
    return folder


def read_manifest(folder: Path) -> ClassifierManifest:
    """The folder's manifest: ClassifierNotFound when there is none, ClassifierRefused when it is unreadable."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ClassifierNotFound(f"no classifier named {folder.name!r} in {folder.parent}",
                                 "list classifiers shows them; train one with: train classifier NAME on data.csv "
                                 "with MODEL")
    try:
        manifest = ClassifierManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ClassifierRefused(f"classifier {folder.name!r}: its manifest {path} is unreadable ({exc})",
                                "train it again") from None
    if manifest.manifest_version != MANIFEST_VERSION:
        raise ClassifierRefused(f"classifier {folder.name!r} has manifest version {manifest.manifest_version}, "
                                f"this LQMF reads {MANIFEST_VERSION}", "train it again")
    return manifest


def _checked_bytes(folder: Path, manifest: ClassifierManifest, name: str) -> bytes:
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClassifierRefused(f"classifier {manifest.name!r}: {path} cannot be read ({exc.strerror or exc})",
                                "train it again") from None
    expected = manifest.files.get(name)
    if expected != _sha(data):
        raise ClassifierRefused(
            f"classifier {manifest.name!r} failed its safety check: {name} is not the file that was saved (its "
            f"sha256 {_sha(data)[:16]}… differs from the manifest's {str(expected)[:16]}…)",
            "the file was changed or damaged after training; train the classifier again")
    return data


def load_pipeline(folder: Path, manifest: ClassifierManifest) -> Any:
    """The saved pipeline, only after its hash and skops' type audit pass; checked against the manifest."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    data = _checked_bytes(folder, manifest, MODEL_FILE)
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a malformed archive: skops' own words, and no object is built
        raise ClassifierRefused(f"classifier {manifest.name!r} failed its safety check: {MODEL_FILE} is not a "
                                f"readable skops file ({exc})", "train it again") from None
    unexpected = sorted(set(untrusted) - set(TRUSTED_EXTRA))
    if unexpected:
        raise ClassifierRefused(
            f"classifier {manifest.name!r} failed its safety check: {MODEL_FILE} would build types that are not "
            f"trusted: {', '.join(unexpected)}", "never load it; train the classifier again from your data")
    try:
        pipeline = sio.load(io.BytesIO(data), trusted=list(untrusted))
    except Exception as exc:
        raise ClassifierRefused(f"classifier {manifest.name!r}: {MODEL_FILE} could not be loaded ({exc})",
                                "train it again (it may come from another scikit-learn version: "
                                f"{manifest.library_versions.get('scikit-learn')})") from None
    if not isinstance(pipeline, Pipeline) or not hasattr(pipeline, "predict_proba"):
        raise ClassifierRefused(f"classifier {manifest.name!r}: {MODEL_FILE} holds a {type(pipeline).__name__}, "
                                "not a scikit-learn pipeline", "train it again")
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if classes != manifest.labels:
        raise ClassifierRefused(f"classifier {manifest.name!r}: the pipeline's labels {classes} are not the "
                                f"manifest's {manifest.labels}", "train it again")
    if getattr(pipeline, "n_features_in_", None) != manifest.embedding.dim:
        raise ClassifierRefused(
            f"classifier {manifest.name!r}: the pipeline takes {getattr(pipeline, 'n_features_in_', '?')} "
            f"dimensions but the manifest says {manifest.embedding.dim}", "train it again")
    return pipeline


def read_eval_rows(folder: Path, manifest: ClassifierManifest) -> list[EvalRow]:
    """The held-out rows kept at training time (their hash checked against the manifest)."""
    data = _checked_bytes(folder, manifest, EVAL_FILE)
    return [EvalRow(**json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


def classifier_names(settings) -> list[str]:
    """The saved classifiers' names, without reading them (the shell's parser asks on every line)."""
    root = classifiers_dir(settings)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_FILE).is_file() and not is_temp_name(p.name))


def list_classifiers(settings) -> list[dict[str, Any]]:
    """Every saved classifier's summary (a broken one listed with the reason), sorted by name."""
    root = classifiers_dir(settings)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and not is_temp_name(p.name)):
        try:
            out.append({**read_manifest(folder).summary(), "usable": True, "reason": ""})
        except (ClassifierNotFound, ClassifierRefused) as exc:
            out.append({"name": folder.name, "usable": False, "reason": exc.message})
    return out
