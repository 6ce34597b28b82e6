"""check_classifier(): does a classifier keep its accuracy on a quantized variant's embeddings?

The held-out split kept at training time, or a labelled file a person brings (evalset.py checks its
columns and labels first), is embedded by the classifier's own model and by each variant; the
classifier (trained on the source's embeddings) labels every set of vectors. Per
variant: accuracy and macro F1 and their drop from the source's, agreement with the source's
labels, cosine similarity of each vector to the source's (mean and 5th percentile), and embedding
throughput (texts/s, the model already loaded). Recorded as a 'classifier-check' experiment, with
an HTML report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from agents.classifiers.chance import ChanceVerdict
from agents.classifiers.data import SUFFIXES
from agents.classifiers.errors import ClassifierRefused, DataError
from agents.classifiers.evalset import LabelledFile, evaluation_set
from agents.classifiers.pipeline import scores
from agents.classifiers.registry import ClassifierRegistry, LoadedClassifier, check_dimension
from agents.classifiers.train import record_failure
from lqmf.base.errors import LQMFError
from lqmf.base.progress import Progress
from lqmf.base.units import format_bytes

log = logging.getLogger(__name__)

MAX_LINEAGE_HOPS = 8
WARM_UP = 32  # texts embedded untimed first: one whole batch, so batched kernels are set up too


@dataclass
class VariantFigures:
    """One model's row of the check (the source's own row is the reference)."""

    model: str
    role: str  # source | variant
    status: str = "ok"  # ok | refused | failed
    reason: str = ""
    format: Optional[str] = None
    level: Optional[str] = None
    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    lineage: str = ""  # derived from the classifier's model, or not known to be
    dim: Optional[int] = None
    accuracy: Optional[float] = None
    f1_macro: Optional[float] = None
    roc_auc: Optional[float] = None
    accuracy_drop: Optional[float] = None
    f1_drop: Optional[float] = None
    agreement: Optional[float] = None  # share of rows labelled as the source's embeddings are
    cosine_mean: Optional[float] = None
    cosine_p5: Optional[float] = None
    cosine_min: Optional[float] = None
    texts_per_s: Optional[float] = None
    embed_s: Optional[float] = None
    confusion_matrix: Optional[list[list[int]]] = None


@dataclass
class CheckReport:
    """The check of one classifier across variants."""

    classifier: str
    model: str
    labels: list[str]
    eval_rows: int
    evaluated_on: str = ""  # "40 held-out rows of data.csv" or "12 rows of test.csv (sha256 …)"
    data: dict[str, Any] = field(default_factory=dict)  # the rows' source: held-out | file, path, sha256, rows
    rows: list[VariantFigures] = field(default_factory=list)
    experiment_id: Optional[int] = None
    report_path: Optional[str] = None
    recommendation: str = ""
    notes: list[str] = field(default_factory=list)
    above_chance: Optional[bool] = None  # the classifier's own cross-validated accuracy clears chance (chance.py)
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cosine_rows(a, b):
    """Cosine similarity of each row of `a` with the same row of `b` (a zero vector gives 0)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def lineage(record, source_sha: str, records: Sequence[Any]) -> str:
    """Whether the manifests lead from `record` back to the model with `source_sha` (source -> output hops)."""
    by_file_sha = {}
    for other in records:
        files = (other.manifest or {}).get("weight_files") or []
        if len(files) == 1 and other.path.is_file():
            by_file_sha[files[0].get("sha256")] = other
    current = record
    for _ in range(MAX_LINEAGE_HOPS):
        source = (current.manifest or {}).get("source") or {}
        sha = source.get("sha256")
        if not sha:
            return "lineage unknown (no manifest)"
        if sha == source_sha:
            return "derived from the classifier's model"
        current = by_file_sha.get(sha)
        if current is None:
            return "not derived from the classifier's model, as far as the manifests tell"
    return "lineage unknown (too many hops)"


def _figures(classifier: LoadedClassifier, vectors, labels_true: list[str]) -> tuple[list[str], dict[str, Any]]:
    import numpy as np

    proba = classifier.pipeline.predict_proba(np.asarray(vectors, dtype=np.float32))
    labels = classifier.manifest.labels
    predicted = [labels[int(i)] for i in proba.argmax(axis=1)]
    return predicted, scores(labels_true, predicted, proba, labels)


def check_classifier(registry: ClassifierRegistry, name: str, variants: Sequence[str], *, store=None,
                     reports_dir: Optional[Path] = None, progress: Optional[Progress] = None,
                     data: Optional[LabelledFile] = None) -> CheckReport:
    """Embed the held-out split (or `data`, a file a person brings) with the source and each variant; score the
    classifier on each; record it."""
    import numpy as np

    from server.runtime.embeddings import embed_texts

    manager = registry.manager
    classifier = registry.get(name)
    manifest = classifier.manifest
    evaluation = evaluation_set(classifier, data)  # a file that does not fit is refused before any model loads
    source = registry.embedding_model(classifier)  # refused when missing or changed
    texts, truth = evaluation.texts, evaluation.labels
    wanted = list(dict.fromkeys(v for v in variants if v != source.name))
    if not wanted:
        raise LQMFError(f"no variant to check classifier {name!r} on (its own model is {source.name})",
                        f"name one or more variants: check classifier {name} on demo-q8_0 and demo-q4_k_m")
    records = {r.name: r for r in manager.available()}
    for variant in wanted:
        if variant not in records and Path(variant).suffix.lower() in SUFFIXES:
            raise DataError(f"{variant} is a labelled file, not a model to check classifier {name!r} on",
                            f"name the variants and give the file as the data: check classifier {name} on "
                            f"VARIANT [and VARIANT] with {variant} (data_file= in lqmf.api, data over HTTP)")
        manager.record(variant)  # an unknown name is refused (with close names) before any work
    verdict = manifest.verdict()
    report = CheckReport(classifier=name, model=source.name, labels=manifest.labels, eval_rows=len(texts),
                         evaluated_on=evaluation.described, data=evaluation.facts, **verdict.fields())
    experiment = None
    if store is not None:
        experiment = store.start_experiment("classifier-check", [source.name, *wanted], {
            "classifier": name, "model_sha256": manifest.embedding.sha256, "eval_rows": len(texts),
            "labels": manifest.labels, "variants": wanted, "data": evaluation.facts})
        report.experiment_id = experiment
    spec = manifest.embedding

    def embed(model: str, index: int):
        # Throughput is measured on a loaded, warmed-up model: not its load, nor a first call's one-off set-up.
        manager.load(model)
        embed_texts(manager, model, texts[:WARM_UP], normalize=spec.normalized, truncate=spec.truncate)
        return embed_texts(manager, model, texts, normalize=spec.normalized, truncate=spec.truncate, progress=progress,
                           what=f"embedding with {model} ({index}/{len(wanted) + 1})")

    try:
        base = embed(source.name, 1)
        base_pred, base_scores = _figures(classifier, base.vectors, truth)
        src = VariantFigures(model=source.name, role="source", format=source.format, level=source.level,
                             size_bytes=source.size_bytes, sha256=spec.sha256, lineage="the classifier's model",
                             dim=int(base.vectors.shape[1]), accuracy=base_scores["accuracy"],
                             f1_macro=base_scores["f1_macro"], roc_auc=base_scores["roc_auc"], accuracy_drop=0.0,
                             f1_drop=0.0, agreement=1.0, cosine_mean=1.0, cosine_p5=1.0, cosine_min=1.0,
                             texts_per_s=len(texts) / base.seconds if base.seconds > 0 else None,
                             embed_s=base.seconds, confusion_matrix=base_scores["confusion_matrix"])
        report.rows.append(src)
        for index, variant in enumerate(wanted, 2):
            record = records.get(variant) or manager.record(variant)
            row = VariantFigures(model=variant, role="variant", format=record.format, level=record.level,
                                 size_bytes=record.size_bytes,
                                 lineage=lineage(record, spec.sha256, list(records.values())))
            report.rows.append(row)
            try:
                row.sha256 = registry.cache.model_sha256(record.path)
                got = embed(variant, index)
                row.dim = int(got.vectors.shape[1])
                check_dimension(classifier, row.dim, variant)
            except ClassifierRefused as exc:
                row.status, row.reason = "refused", f"{exc.message} ({exc.hint})"
                continue
            except LQMFError as exc:  # one variant that cannot embed does not stop the others
                row.status, row.reason = "failed", f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")
                continue
            predicted, got_scores = _figures(classifier, got.vectors, truth)
            cos = cosine_rows(got.vectors, base.vectors)
            row.accuracy, row.f1_macro = got_scores["accuracy"], got_scores["f1_macro"]
            row.roc_auc = got_scores["roc_auc"]
            row.confusion_matrix = got_scores["confusion_matrix"]
            row.accuracy_drop = src.accuracy - row.accuracy
            row.f1_drop = src.f1_macro - row.f1_macro
            row.agreement = float(np.mean([a == b for a, b in zip(predicted, base_pred, strict=True)]))
            row.cosine_mean, row.cosine_p5 = float(cos.mean()), float(np.percentile(cos, 5))
            row.cosine_min = float(cos.min())
            row.embed_s = got.seconds
            row.texts_per_s = len(texts) / got.seconds if got.seconds > 0 else None
        report.recommendation = recommend(report.rows, verdict)
        report.notes = [*evaluation.notes,
                        "cosine: each variant's vector against the source's vector of the same text",
                        "throughput: embedding only, the model loaded and warmed up first"]
        if reports_dir is not None:
            report.report_path = str(write_check_report(report, Path(reports_dir)))
    except BaseException as exc:
        record_failure(store, experiment, exc, name)
        raise
    if experiment is not None:
        for row in report.rows:
            store.add_result(experiment, row.model, f"classifier {name}: {evaluation.described}",
                             latency_s=row.embed_s, tokens_per_second=None, metrics=asdict(row))
        store.finish_experiment(experiment, {"classifier": name, "model": source.name, "data": evaluation.facts,
                                             "rows": [asdict(r) for r in report.rows],
                                             "recommendation": report.recommendation,
                                             **verdict.fields(),
                                             "report_path": report.report_path})
    log.info("checked classifier %s on %s with %s: %s", name, ", ".join(wanted), evaluation.described,
             report.recommendation)
    return report


def recommend(rows: Sequence[VariantFigures], verdict: Optional[ChanceVerdict] = None) -> str:
    """The smallest variant that keeps the source's accuracy, or the one that loses least; no praise for keeping the
    accuracy of a classifier that is not clearly above chance (`verdict`)."""
    measured = [r for r in rows if r.role == "variant" and r.status == "ok"]
    if not measured:
        return "no variant could be checked"
    if verdict is not None and verdict.above_chance is False:
        figures = "; ".join(f"{r.model} {r.accuracy:.3f}, agreeing with the source on {100 * r.agreement:.1f}%"
                            for r in measured)
        low, high = verdict.interval or (0.0, 0.0)
        return (f"no verdict on the variants: the classifier itself is not clearly above chance (cross-validated "
                f"{verdict.accuracy:.2f}, 95% {low:.2f}–{high:.2f}, vs chance {verdict.chance:.2f}), so keeping its "
                f"accuracy says nothing about them ({figures}); {verdict.advice}")
    kept = [r for r in measured if (r.accuracy_drop or 0) <= 0]
    if kept:
        best = min(kept, key=lambda r: (r.size_bytes or 0))
        return (f"{best.model} keeps the classifier's accuracy ({best.accuracy:.3f}) at "
                f"{format_bytes(best.size_bytes)}, agreeing with the source on {100 * best.agreement:.1f}%")
    best = min(measured, key=lambda r: (r.accuracy_drop, r.size_bytes or 0))
    return (f"every variant loses accuracy; least: {best.model} "
            f"({best.accuracy:.3f}, {100 * best.accuracy_drop:.1f} points lower)")


def write_check_report(report: CheckReport, reports_dir: Path) -> Path:
    """The HTML report: the variant table and the classifier charts."""
    from agents.measure.report_html import VariantRow, write_report

    rows = [VariantRow(model=r.model, format=r.format, level=r.level, size_bytes=r.size_bytes,
                       clf_accuracy=r.accuracy, clf_f1=r.f1_macro, clf_agreement=r.agreement,
                       emb_cosine_mean=r.cosine_mean, emb_cosine_p5=r.cosine_p5, emb_texts_per_s=r.texts_per_s)
            for r in report.rows]
    notes = [*([f"classifier {report.classifier}: {report.warning}"] if report.warning else []), *report.notes,
             *(f"{r.model}: {r.status}: {r.reason}" for r in report.rows if r.status != "ok")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"experiment-{report.experiment_id}-classifier-check.html" if report.experiment_id else \
        f"classifier-check-{report.classifier}-{stamp}.html"
    title = f"LQMF classifier check: {report.classifier} ({report.model}) on {report.evaluated_on}"
    return write_report(reports_dir / name, title, rows,
                        reference=report.model, recommendation=report.recommendation, notes=notes)
