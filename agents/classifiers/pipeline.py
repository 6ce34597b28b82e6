"""The scikit-learn pipeline (scaler, optional PCA, SVM or logistic regression) and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from agents.classifiers.errors import DataError

if TYPE_CHECKING:
    import numpy as np

ALGORITHMS = ("logreg", "svm")
DEFAULT_ALGORITHM = "logreg"
MAX_FOLDS = 5


@dataclass(frozen=True)
class PipelineSpec:
    """What to build: the algorithm, PCA (a share of variance in (0, 1), or a number of components) and the seed."""

    algorithm: str = DEFAULT_ALGORITHM
    pca: Optional[float] = None
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "pca": self.pca, "seed": self.seed,
                "steps": ["StandardScaler", *(["PCA"] if self.pca else []), CLASSIFIER_NAMES[self.algorithm]]}


def _logreg(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=5000, random_state=seed)


def _svm(seed: int):
    # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its documented replacement.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), ensemble=False)


CLASSIFIERS: dict[str, Callable[[int], Any]] = {"logreg": _logreg, "svm": _svm}
CLASSIFIER_NAMES = {"logreg": "LogisticRegression", "svm": "CalibratedClassifierCV(SVC(kernel='rbf'))"}


def check_algorithm(spec: PipelineSpec) -> None:
    """Refuse an algorithm this module cannot build."""
    if spec.algorithm not in CLASSIFIERS:
        raise DataError(f"unknown algorithm {spec.algorithm!r}", f"use one of {', '.join(ALGORITHMS)}")


def check_spec(spec: PipelineSpec, dim: int, rows: int) -> None:
    """Refuse an unknown algorithm or a PCA setting the data cannot have (`rows`: the smallest training fold)."""
    check_algorithm(spec)
    if spec.pca is None:
        return
    if 0 < spec.pca < 1:
        return
    if float(spec.pca).is_integer() and 1 <= spec.pca <= min(dim, rows):
        return
    raise DataError(f"pca {spec.pca:g} is neither a share of variance in (0, 1) nor a number of components "
                    f"from 1 to {min(dim, rows)}", "e.g. pca 0.95 keeps the components explaining 95% of the variance")


def build_pipeline(spec: PipelineSpec):
    """A fresh, unfitted pipeline."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if spec.pca:
        n = spec.pca if spec.pca < 1 else int(spec.pca)
        steps.append(("pca", PCA(n_components=n, svd_solver="full", random_state=spec.seed)))
    steps.append(("classify", CLASSIFIERS[spec.algorithm](spec.seed)))
    return Pipeline(steps)


def folds_for(labels: Sequence[str]) -> int:
    """Folds of the stratified cross-validation: five, or fewer when a label has fewer rows."""
    smallest = min(list(labels).count(label) for label in set(labels))
    return max(2, min(MAX_FOLDS, smallest))


def cv_splitter(labels: Sequence[str], seed: int):
    """The shuffled, stratified k-fold splitter training uses (and a reader can rebuild from the manifest)."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=folds_for(labels), shuffle=True, random_state=seed)


def scores(y_true: Sequence[str], y_pred: Sequence[str], proba: Optional["np.ndarray"],
           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro F1, ROC-AUC (two labels, from the second label's probability) and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=list(labels), zero_division=0)),
        "roc_auc": None,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }
    if len(labels) == 2 and proba is not None and len(set(y_true)) == 2:
        out["roc_auc"] = float(roc_auc_score([y == labels[1] for y in y_true], proba[:, 1]))
    return out


def cross_validate(spec: PipelineSpec, X: "np.ndarray", y: Sequence[str]) -> dict[str, Any]:
    """Stratified k-fold figures on (X, y): per-fold and mean accuracy / macro F1 / ROC-AUC, pooled confusion."""
    import numpy as np
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import cross_val_predict
    from sklearn.model_selection import cross_validate as sk_cross_validate

    labels = sorted(set(y))
    binary = len(labels) == 2
    scoring = ["accuracy", "f1_macro", *(["roc_auc"] if binary else [])]
    y = np.asarray(y)
    splitter = cv_splitter(list(y), spec.seed)
    got = sk_cross_validate(build_pipeline(spec), X, y, cv=splitter, scoring=scoring)
    predicted = cross_val_predict(build_pipeline(spec), X, y, cv=splitter)

    def mean_std(key: str) -> tuple[Optional[float], Optional[float]]:
        values = got.get(f"test_{key}")
        return (float(np.mean(values)), float(np.std(values))) if values is not None else (None, None)

    out: dict[str, Any] = {"folds": splitter.get_n_splits(), "labels": labels, "shuffle": True, "seed": spec.seed,
                           "splitter": "StratifiedKFold"}
    for key in ("accuracy", "f1_macro", "roc_auc"):
        mean, std = mean_std(key)
        out[key], out[f"{key}_std"] = mean, std
        out[f"{key}_per_fold"] = [float(v) for v in got[f"test_{key}"]] if mean is not None else None
    out["confusion_matrix"] = confusion_matrix(y, predicted, labels=labels).tolist()
    return out
