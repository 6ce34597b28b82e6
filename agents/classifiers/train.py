"""train_classifier(): data -> embeddings (cached) -> stratified hold-out split -> k-fold CV -> fit -> safe save."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from agents.classifiers.artifact import (
    ClassifierManifest,
    EmbeddingSpec,
    EvalRow,
    check_name,
    classifiers_dir,
    save_classifier,
)
from agents.classifiers.cache import EmbeddingCache
from agents.classifiers.chance import inputs_from_cv, judge
from agents.classifiers.data import describe, read_labelled
from agents.classifiers.pipeline import (
    PipelineSpec,
    build_pipeline,
    check_algorithm,
    check_spec,
    cross_validate,
    folds_for,
    scores,
)
from lqmf.base.progress import Progress

log = logging.getLogger(__name__)

TEST_SIZE = 0.2


@dataclass(frozen=True)
class TrainRequest:
    """What `train classifier NAME on FILE with MODEL [text column T, label column L] [svm|logreg] [pca P]` asks."""

    name: str
    data: Path
    model: str
    text_column: str = "text"
    label_column: str = "label"
    spec: PipelineSpec = PipelineSpec()
    test_size: float = TEST_SIZE
    normalize: bool = True


@dataclass
class TrainReport:
    """A trained classifier: where it is, its manifest, and the time its parts took."""

    name: str
    path: str
    manifest: dict[str, Any]
    experiment_id: Optional[int]
    replaced: bool
    seconds: float
    above_chance: Optional[bool] = None  # the cross-validated accuracy's interval clears chance (chance.py)
    warning: str = ""  # why the classifier should not be trusted, when it should not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_failure(store, experiment: Optional[int], exc: BaseException, classifier: str) -> None:
    """Close a classifier experiment that raised: incomplete on Ctrl-C, failed otherwise (no row: nothing)."""
    if experiment is None:
        return
    stopped = isinstance(exc, KeyboardInterrupt)
    store.finish_experiment(experiment, {"error": str(exc), "type": type(exc).__name__, "classifier": classifier},
                            failed=not stopped, incomplete=stopped)


def split_rows(labels: list[str], test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified (train, eval) row indices, each in file order; every label keeps a row in each part."""
    from sklearn.model_selection import train_test_split

    n_labels = len(set(labels))
    n_eval = max(n_labels, round(len(labels) * test_size))
    train, held = train_test_split(list(range(len(labels))), test_size=n_eval, stratify=labels, random_state=seed)
    return sorted(train), sorted(held)


def train_classifier(request: TrainRequest, *, settings, manager, store=None, cache: Optional[EmbeddingCache] = None,
                     progress: Optional[Progress] = None) -> TrainReport:
    """Train, cross-validate, evaluate on the held-out split, save atomically; recorded as 'classifier-train'."""
    import numpy as np

    started = time.perf_counter()
    name = check_name(request.name)
    check_algorithm(request.spec)
    data = read_labelled(request.data, request.text_column, request.label_column)
    record = manager.record(request.model)  # ModelNotFound (with close names) before any work
    cache = cache or EmbeddingCache(settings.cache_dir)
    experiment = None
    if store is not None:
        experiment = store.start_experiment("classifier-train", [record.name], {
            "classifier": name, "data": str(data.path), "data_sha256": data.sha256, "rows": len(data.texts),
            "text_column": data.text_column, "label_column": data.label_column, **request.spec.describe()})
    try:
        model_sha = cache.model_sha256(record.path)
        embedded = cache.embed(manager, record.name, model_sha, data.texts, normalize=request.normalize,
                               truncate=True, progress=progress)
        X, y = embedded.vectors, np.asarray(data.labels)
        train_idx, eval_idx = split_rows(data.labels, request.test_size, request.spec.seed)
        # PCA is fitted inside every fold, on its training part: the smallest one bounds the components.
        folds = folds_for([data.labels[i] for i in train_idx])
        check_spec(request.spec, embedded.dim, len(train_idx) - -(-len(train_idx) // folds))
        if progress:
            progress("cross-validating", 0, 1)
        cv = cross_validate(request.spec, X[train_idx], y[train_idx])
        pipeline = build_pipeline(request.spec).fit(X[train_idx], y[train_idx])
        labels = [str(c) for c in pipeline.classes_]
        proba = pipeline.predict_proba(X[eval_idx])
        predicted = [labels[i] for i in proba.argmax(axis=1)]
        holdout = {"rows": len(eval_idx), **scores(list(y[eval_idx]), predicted, proba, labels)}
        if progress:
            progress("cross-validating", 1, 1)
        pca = pipeline.named_steps.get("pca")
        verdict = judge(inputs_from_cv(data.counts(), cv["labels"], cv["confusion_matrix"]))
        manifest = ClassifierManifest(
            name=name,
            embedding=EmbeddingSpec(model=record.name, sha256=model_sha, format=record.format, level=record.level,
                                    dim=embedded.dim, pooling=embedded.pooling, normalized=request.normalize,
                                    truncate=True),
            labels=labels,
            data=describe(data),
            pipeline={**request.spec.describe(), "pca_components": int(pca.n_components_) if pca is not None else None},
            split={"method": "sklearn.model_selection.train_test_split(stratify=labels)",
                   "test_size": request.test_size,
                   "seed": request.spec.seed, "train_rows": len(train_idx), "eval_rows": len(eval_idx),
                   "train_order": "file order", "eval_file": "eval.jsonl"},
            cv=cv, holdout=holdout, chance=verdict.to_dict(),
            embedding_run={"computed": embedded.computed, "cached": embedded.cached,
                           "seconds": round(embedded.seconds, 4), "tokens": int(sum(embedded.token_counts))},
            experiment_id=experiment,
        )
        eval_rows = [EvalRow(data.lines[i], data.texts[i], data.labels[i]) for i in eval_idx]
        folder = classifiers_dir(settings) / name
        replaced = folder.exists()
        save_classifier(folder, pipeline, manifest, eval_rows)
    except BaseException as exc:
        record_failure(store, experiment, exc, name)
        raise
    report = TrainReport(name=name, path=str(folder), manifest=manifest.to_dict(), experiment_id=experiment,
                         replaced=replaced, seconds=round(time.perf_counter() - started, 3), **verdict.fields())
    if experiment is not None:
        for fold, (acc, f1) in enumerate(zip(cv["accuracy_per_fold"], cv["f1_macro_per_fold"], strict=True), 1):
            auc = cv["roc_auc_per_fold"][fold - 1] if cv["roc_auc_per_fold"] else None
            store.add_result(experiment, record.name, f"cross-validation fold {fold}/{cv['folds']}",
                             metrics={"fold": fold, "accuracy": acc, "f1_macro": f1, "roc_auc": auc})
        store.add_result(experiment, record.name, f"held-out split ({len(eval_idx)} rows)",
                         metrics={"holdout": True, **holdout})
        store.finish_experiment(experiment, {
            "classifier": name, "path": str(folder), "model": record.name, "model_sha256": model_sha,
            "dim": embedded.dim, "labels": labels, "cv": cv, "holdout": holdout, **request.spec.describe(),
            "chance": verdict.to_dict(),
            "recommendation": f"classifier {name}: cross-validated accuracy {cv['accuracy']:.3f}, "
                              f"held-out accuracy {holdout['accuracy']:.3f}"
                              + (f"; {verdict.warning}" if verdict.warning else "")})
    log.info("trained classifier %s on %s with %s: cv accuracy %.3f, held-out %.3f (%d embedded, %d cached)",
             name, data.path, record.name, cv["accuracy"], holdout["accuracy"], embedded.computed, embedded.cached)
    if verdict.warning:
        log.warning("classifier %s: %s", name, verdict.warning)
    return report
