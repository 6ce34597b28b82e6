"""What a classifier check scores on: the held-out split kept at training time, or a labelled file a person brings.

A brought file must name the classifier's own training columns and hold only labels it was trained on. Both are
checked here, before any model is loaded, so a wrong file costs nothing and leaves nothing behind. A label the
classifier never saw cannot be predicted (accuracy on its rows is 0 whatever the variant), so such rows are refused
with their labels and lines, or, when asked, dropped and counted in the report.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from agents.classifiers.artifact import read_eval_rows
from agents.classifiers.data import LabelledSet, read_rows, show_columns
from agents.classifiers.errors import DataError, MissingColumns
from agents.classifiers.registry import LoadedClassifier
from lqmf.base.units import plural

log = logging.getLogger(__name__)

LISTED = 8  # unknown labels named in a refusal; the rest are counted


@dataclass(frozen=True)
class LabelledFile:
    """A labelled .csv / .jsonl file a person brings to a check instead of the held-out split."""

    path: Path
    content: Optional[bytes] = None  # its bytes when they came with a request (`path` then only names it)
    drop_unknown_labels: bool = False  # score the rows whose label the classifier knows, instead of refusing


@dataclass(frozen=True)
class EvalSet:
    """The labelled texts a check scores, and where they came from."""

    texts: list[str]
    labels: list[str]
    described: str  # how the report names them: "40 held-out rows of data.csv", "12 rows of test.csv (sha256 …)"
    facts: dict[str, Any]  # recorded with the experiment: source, path, sha256, rows, columns, dropped rows
    notes: list[str] = field(default_factory=list)


def held_out(classifier: LoadedClassifier) -> EvalSet:
    """The split kept at training time (eval.jsonl, its hash checked against the manifest)."""
    manifest = classifier.manifest
    rows = read_eval_rows(classifier.folder, manifest)
    path = str(manifest.data.get("path"))
    return EvalSet(texts=[r.text for r in rows], labels=[r.label for r in rows],
                   described=f"{len(rows)} held-out rows of {Path(path).name}",
                   facts={"source": "held-out", "path": path, "sha256": manifest.data.get("sha256"),
                          "rows": len(rows), "test_size": manifest.split.get("test_size")},
                   notes=[f"{len(rows)} held-out rows of {path} (labels {', '.join(manifest.labels)})"])


def from_file(classifier: LoadedClassifier, brought: LabelledFile) -> EvalSet:
    """The rows of a brought file, refused (DataError) when its columns or labels do not fit the classifier."""
    manifest = classifier.manifest
    text_column = manifest.data.get("text_column") or "text"
    label_column = manifest.data.get("label_column") or "label"
    try:
        data = read_rows(brought.path, text_column, label_column, content=brought.content)
    except MissingColumns as exc:
        raise _columns_refused(classifier, brought.path, exc, text_column, label_column) from None
    known = set(manifest.labels)
    keep = [i for i, label in enumerate(data.labels) if label in known]
    dropped: dict[str, int] = {}
    if len(keep) < len(data.labels):
        unknown = _unknown(data, known)
        if not brought.drop_unknown_labels or not keep:
            raise _labels_refused(classifier, data, unknown, dropping=brought.drop_unknown_labels)
        dropped = {label: len(lines) for label, lines in unknown.items()}
    texts, labels = [data.texts[i] for i in keep], [data.labels[i] for i in keep]
    counts = dict(sorted(Counter(labels).items()))
    notes = [f"{plural(len(texts), 'row')} of {data.path} (sha256 {data.sha256}, {data.format}; "
             + ", ".join(f"{label} {n}" for label, n in counts.items()) + ")"]
    if dropped:
        notes.append(f"dropped {plural(len(data.labels) - len(keep), 'row')} with labels the classifier was never "
                     "trained on: "
                     + ", ".join(f"{show_columns([label])} ({n})" for label, n in list(dropped.items())[:LISTED])
                     + (f" and {len(dropped) - LISTED} more labels" if len(dropped) > LISTED else ""))
    absent = sorted(known - set(labels))
    if absent:
        notes.append(f"no rows of {', '.join(map(repr, absent))} in the file: macro F1 still averages over every "
                     "label the classifier knows, and ROC-AUC needs rows of both labels")
    if data.sha256 == manifest.data.get("sha256"):
        # Most of the training file was fitted on; only the held-out split is a fair test.
        notes.append("this is the file the classifier was trained on: most of its rows were fitted on, so the "
                     "accuracy is optimistic (leave out `with FILE` to check on the held-out split)")
    facts = {"source": "file", "path": str(data.path), "sha256": data.sha256, "format": data.format,
             "rows": len(texts), "file_rows": len(data.texts), "text_column": text_column,
             "label_column": label_column, "counts": counts, "dropped": dropped,
             "dropped_rows": len(data.labels) - len(keep), "sent": brought.content is not None}
    log.info("check of classifier %s on %s: %d rows (%d dropped)", manifest.name, data.path, len(texts),
             len(data.texts) - len(texts))
    return EvalSet(texts=texts, labels=labels, described=f"{plural(len(texts), 'row')} of {data.path.name} "
                   f"(sha256 {data.sha256[:12]}…)", facts=facts, notes=notes)


def evaluation_set(classifier: LoadedClassifier, brought: Optional[LabelledFile]) -> EvalSet:
    """The brought file's rows when there is one, else the held-out split."""
    return held_out(classifier) if brought is None else from_file(classifier, brought)


def _columns_refused(classifier: LoadedClassifier, path: Path, exc: MissingColumns, text_column: str,
                     label_column: str) -> DataError:
    noun = "columns" if Path(path).suffix.lower() == ".csv" else f"fields on line {exc.line}"
    found = show_columns(exc.found)
    missing = ", ".join(map(repr, exc.missing))
    return DataError(
        f"{path}: its {noun} are {found}, but classifier {classifier.name!r} needs the text column {text_column!r} "
        f"and the label column {label_column!r} (the columns it was trained on); missing: {missing}",
        f"name the columns {text_column} and {label_column} in the file (its header row, or each line's keys), "
        "then check again")


def _unknown(data: LabelledSet, known: set[str]) -> dict[str, list[int]]:
    """Each label the classifier does not know, with the lines that carry it (in file order)."""
    out: dict[str, list[int]] = {}
    for label, line in zip(data.labels, data.lines, strict=True):
        if label not in known:
            out.setdefault(label, []).append(line)
    return out


def _labels_refused(classifier: LoadedClassifier, data: LabelledSet, unknown: dict[str, list[int]],
                    dropping: bool) -> DataError:
    rows = sum(len(lines) for lines in unknown.values())
    listed = ", ".join(f"{show_columns([label])} ({len(lines)} row{'s' * (len(lines) > 1)}, first on line {lines[0]})"
                       for label, lines in list(unknown.items())[:LISTED])
    more = f" and {len(unknown) - LISTED} more" if len(unknown) > LISTED else ""
    known = ", ".join(map(repr, classifier.manifest.labels))
    if dropping:  # every row had an unknown label: nothing is left to score
        return DataError(f"{data.path}: no row has a label classifier {classifier.name!r} was trained on ({known}); "
                         f"its labels are {listed}{more}",
                         f"check with a file of {known} rows, in the label column {data.label_column!r}")
    return DataError(
        f"{data.path}: {rows} of {len(data.labels)} rows have labels classifier {classifier.name!r} was never "
        f"trained on: {listed}{more}; it knows only {known}",
        "a classifier cannot predict a label it never saw (its accuracy on those rows would be 0 on every "
        "variant): remove those rows, or drop them (drop unknown labels in the shell, drop_unknown_labels=True in "
        "lqmf.api and over HTTP) to check on the rest")
