"""Intent by meaning: a logistic regression over the sentence model's vectors of the example sentences.

The line is embedded with its slot values masked (every model name reads "X", quoted text "text", a URL
"url", a file "file"): the classifier learns how people ask, not which names the examples happen to use.
Its probabilities are fused with the word rules (agents/understanding/fusion.py) and the fused choice gets
a confidence from a calibrator fitted on out-of-fold predictions of the example rows.

Stored like any LQMF classifier (agents/classifiers/artifact.py: skops, sha-checked, audited types) in the
understanding folder, with the calibrator's coefficients and the threshold in its manifest.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from agents.intents import Intent

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CLASSIFIER_FOLDER = "intents"
ALGORITHM_C = 30.0  # regularisation chosen on the dev rows' cross-validation
VECTOR_WEIGHT = 1.5  # the vector's weight beside the n-grams', chosen the same way (1.5: 93.7%, 2: 92.8%, 3: 92.2%)
URL_TEXT = re.compile(r"https?://\S+")
QUOTED_TEXT = re.compile(r"\"[^\"]*\"|(?<![A-Za-z0-9])'[^']*'(?![A-Za-z0-9])")


def masked(line: str, refs: Sequence[str], files: Sequence[str] = ()) -> str:
    """The line with its slot values as stand-in words (X, "text", url, file), as the classifier was trained."""
    out = QUOTED_TEXT.sub(' "text" ', line)
    out = URL_TEXT.sub(" url ", out)
    for ref in sorted({r for r in refs if r}, key=len, reverse=True):
        out = re.sub(rf"(?<![\w.-]){re.escape(ref)}(?![\w-])", " X ", out, flags=re.I)
    for name in sorted({f for f in files if f}, key=len, reverse=True):
        out = out.replace(name, " file ")
    return re.sub(r"\s+", " ", out).strip()


def new_pipeline(seed: int = 0):
    """The unfitted classifier: one logistic regression over the line's vector and its character n-grams.

    The vector carries meaning; the n-grams carry the exact words a vector blurs ("endpoint", "default",
    "classifier", a typo of "remove"). Out of fold on the dev rows (benchmarks/understanding.py reruns it): the
    vector alone 91.7%, the n-grams alone 84.7%, both 93.7%.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    features = ColumnTransformer(
        [("text", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True), 0),
         ("vector", "passthrough", slice(1, None))],
        transformer_weights={"text": 1.0, "vector": VECTOR_WEIGHT})
    return Pipeline([("features", features),
                     ("classify", LogisticRegression(C=ALGORITHM_C, max_iter=5000, random_state=seed))])


def rows(texts: Sequence[str], vectors: "np.ndarray") -> "np.ndarray":
    """The classifier's input: each masked line beside its vector, one object row per line."""
    import numpy as np

    out = np.empty((len(texts), 1 + vectors.shape[1]), dtype=object)
    out[:, 0] = list(texts)
    out[:, 1:] = vectors
    return out


@dataclass(frozen=True)
class Calibrator:
    """P(the fused reading is right) from its features: a logistic curve fitted on out-of-fold rows."""

    coef: tuple[float, ...]
    intercept: float
    threshold: float  # below it the shell asks instead of acting

    def confidence(self, features: Sequence[float]) -> float:
        z = self.intercept + sum(c * f for c, f in zip(self.coef, features, strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": list(self.coef), "intercept": self.intercept, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibrator":
        return cls(tuple(float(c) for c in data["coef"]), float(data["intercept"]), float(data["threshold"]))


@dataclass
class IntentModel:
    """The fitted classifier and its calibrator: vector -> intents ranked by probability."""

    pipeline: Any
    calibrator: Calibrator
    labels: list[str] = field(default_factory=list)

    def rank(self, masked_line: str, vector: "np.ndarray") -> list[tuple[Intent, float]]:
        """Every intent the classifier knows, most probable first."""
        probabilities = self.pipeline.predict_proba(rows([masked_line], vector.reshape(1, -1)))[0]
        ranked = sorted(zip(self.labels, probabilities, strict=True), key=lambda pair: -pair[1])
        return [(Intent(label), float(p)) for label, p in ranked]


def save(folder: Path, model: IntentModel, *, embedding: dict[str, Any], data: dict[str, Any],
         cv: dict[str, Any]) -> Path:
    """Write the classifier folder (atomically, like every LQMF classifier)."""
    from agents.classifiers.artifact import ClassifierManifest, EmbeddingSpec, save_classifier

    manifest = ClassifierManifest(
        name=CLASSIFIER_FOLDER, embedding=EmbeddingSpec(**embedding), labels=list(model.labels), data=data,
        pipeline={"algorithm": "logreg", "C": ALGORITHM_C, "pca": None, "vector_weight": VECTOR_WEIGHT,
                  "steps": ["ColumnTransformer(TfidfVectorizer(char_wb 2-5), vector)", "LogisticRegression"],
                  "calibration": model.calibrator.to_dict()},
        split={"dev": "agents/understanding/examples/*.txt", "held_out": "tests/phrasings-held-out.txt (never read)"},
        cv=cv, holdout={})
    return save_classifier(folder, model.pipeline, manifest, [])


def load(folder: Path) -> tuple[IntentModel, Any]:
    """The stored model (hash and type audit checked) and its manifest."""
    from agents.classifiers.artifact import load_pipeline, read_manifest

    manifest = read_manifest(folder)
    pipeline = load_pipeline(folder, manifest)
    calibrator = Calibrator.from_dict(manifest.pipeline["calibration"])
    return IntentModel(pipeline, calibrator, list(manifest.labels)), manifest
