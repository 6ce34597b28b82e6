"""Build the shell's understanding: the sentence model's GGUF, then the intent classifier and its calibrator.

    python -m agents.understanding [--force]     (`make setup` runs it; seconds when nothing changed)

Trained on the dev rows only (agents/understanding/examples/). The calibrator is fitted on out-of-fold
predictions (5 folds), so the confidence of a row never comes from a model that saw it. The build is
stamped with the hashes of the examples, the GGUF and the settings below: an unchanged build is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from agents.intents import Intent
from agents.understanding.examples import (
    Example,
    dev_examples,
    example_classifiers,
    example_endpoints,
    example_models,
    examples_folder,
)
from agents.understanding.fusion import RULE_KEEP, Reading, fuse
from agents.understanding.intent_model import (
    ALGORITHM_C,
    CLASSIFIER_FOLDER,
    Calibrator,
    IntentModel,
    new_pipeline,
    save,
)
from agents.understanding.intent_model import rows as model_rows
from agents.understanding.sentence_model import MODEL_NAME, STAMP, SentenceModel, ensure_gguf

if TYPE_CHECKING:
    import numpy as np

    from lqmf.base.settings import Settings

log = logging.getLogger(__name__)

BUILD_STAMP = "build.json"
FOLDS = 5
# Ask below this confidence: where the calibrated chance that the reading is wrong passes one in three.
THRESHOLD = 0.67
BUCKETS = (0.0, 0.3, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0001)
# The parser's modules in agents/ (it splits and masks the rows and gives the rules' reading): in the stamp.
PARSER_FILES = ("decision_agent.py", "line_words.py", "described_models.py", "references.py", "command_words.py",
                "intent_rules.py", "slot_reading.py", "endpoint_commands.py", "classifier_parse.py", "spoken_names.py")


@dataclass
class BuildReport:
    """What a build did and measured."""

    folder: str
    built: bool
    rows: int
    intents: int
    cv_accuracy: Optional[float] = None  # the classifier alone, out of fold
    fused_accuracy: Optional[float] = None  # rules + classifier, out of fold
    rules_accuracy: Optional[float] = None
    reliability: Optional[list[dict]] = None
    seconds: float = 0.0


def _fingerprint(gguf: Path) -> dict:
    digest = hashlib.sha256()
    # The examples, and the code that reads, masks, trains and fuses: a change to either is a new build.
    code = [Path(__file__).with_name(name) for name in ("build.py", "intent_model.py", "fusion.py")]
    code += [Path(__file__).parents[1] / name for name in PARSER_FILES]
    for path in sorted(examples_folder().glob("*.txt")) + code:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"examples_sha256": digest.hexdigest(), "gguf_bytes": gguf.stat().st_size,
            "gguf_mtime_ns": gguf.stat().st_mtime_ns, "C": ALGORITHM_C, "rule_keep": RULE_KEEP,
            "threshold": THRESHOLD, "folds": FOLDS}


def reliability(confidences: Sequence[float], right: Sequence[bool]) -> list[dict]:
    """Confidence bucket -> rows and accuracy: the table a threshold is chosen from."""
    table = []
    for low, high in zip(BUCKETS, BUCKETS[1:], strict=False):
        hits = [ok for c, ok in zip(confidences, right, strict=True) if low <= c < high]
        table.append({"bucket": f"{low:.2f}-{min(high, 1):.2f}", "rows": len(hits),
                      "accuracy": round(sum(hits) / len(hits), 3) if hits else None})
    return table


def readings(rows: Sequence[Example], rank_rows: "np.ndarray", labels: Sequence[str], agent) -> list[tuple]:
    """For each row: the rules' intent, the fused Reading and its calibrator features."""
    out = []
    for row, probabilities in zip(rows, rank_rows, strict=True):
        split, rule = agent.rule_reading(row.text)
        ranked = sorted(((Intent(label), float(p)) for label, p in zip(labels, probabilities, strict=True)),
                        key=lambda pair: -pair[1])
        reading: Reading = fuse(rule.intent, ranked, exact=rule.exact)
        out.append((rule.intent, reading, reading.features(rule.intent, len(split.corrections))))
    return out


def fit_calibrator(features: Sequence[Sequence[float]], right: Sequence[bool]) -> Calibrator:
    """A logistic curve from the features to P(right)."""
    from sklearn.linear_model import LogisticRegression

    if all(right) or not any(right):  # one class only: a constant is all the data says
        constant = 6.0 if all(right) else -6.0
        return Calibrator(tuple(0.0 for _ in features[0]), constant, THRESHOLD)
    fitted = LogisticRegression(max_iter=5000).fit(features, right)
    return Calibrator(tuple(float(c) for c in fitted.coef_[0]), float(fitted.intercept_[0]), THRESHOLD)


def build(settings: "Settings", *, force: bool = False) -> BuildReport:
    """Make (or keep) the GGUF and the intent classifier under settings.understanding_dir."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from agents.decision_agent import DecisionAgent

    started = time.perf_counter()
    gguf = ensure_gguf(settings)
    folder = settings.understanding_dir / CLASSIFIER_FOLDER
    stamp_path = settings.understanding_dir / BUILD_STAMP
    fingerprint = _fingerprint(gguf)
    rows = dev_examples()
    if not force and stamp_path.is_file() and (folder / "manifest.json").is_file():
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        if stamp.get("fingerprint") == fingerprint:
            return BuildReport(str(folder), False, len(rows), len({r.intent for r in rows}),
                               **stamp.get("measured", {}), seconds=time.perf_counter() - started)
    names, classifiers = example_models(), example_classifiers()
    agent = DecisionAgent(lambda: names, classifier_names=lambda: classifiers,
                          endpoint_names=example_endpoints)
    encoder = SentenceModel.open(gguf)
    texts = [agent.masked(row.text) for row in rows]
    try:
        inputs = model_rows(texts, np.stack([encoder.embed(text) for text in texts]))
    finally:
        encoder.close()
    labels_of_rows = [row.intent.value for row in rows]
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    oof = cross_val_predict(new_pipeline(), inputs, labels_of_rows, cv=folds, method="predict_proba")
    labels = sorted(set(labels_of_rows))
    read = readings(rows, oof, labels, agent)
    right = [reading.intent is row.intent for row, (_, reading, _) in zip(rows, read, strict=True)]
    calibrator = fit_calibrator([features for _, _, features in read], right)
    confidences = [calibrator.confidence(features) for _, _, features in read]
    measured = {
        "cv_accuracy": round(float(np.mean([labels[i] == y for i, y in zip(oof.argmax(1), labels_of_rows,
                                                                             strict=True)])), 4),
        "fused_accuracy": round(sum(right) / len(right), 4),
        "rules_accuracy": round(sum(rule is row.intent for row, (rule, _, _) in zip(rows, read, strict=True))
                                / len(rows), 4),
        "reliability": reliability(confidences, right),
    }
    model = IntentModel(new_pipeline().fit(inputs, labels_of_rows), calibrator, labels)
    source = json.loads((settings.understanding_dir / STAMP).read_text(encoding="utf-8"))
    save(folder, model, embedding={"model": MODEL_NAME, "sha256": source["zip_sha256"], "format": "gguf",
                                   # dim: what the pipeline takes, the line beside its 384 numbers
                                   "level": "f16", "dim": int(inputs.shape[1]), "pooling": "mean",
                                   "normalized": True, "truncate": True},
         data={"rows": len(rows), "intents": len(labels), "files": "agents/understanding/examples/*.txt"},
         cv={"folds": FOLDS, **{k: v for k, v in measured.items() if k != "reliability"}})
    stamp_path.write_text(json.dumps({"fingerprint": fingerprint, "measured": measured}, indent=2), encoding="utf-8")
    report = BuildReport(str(folder), True, len(rows), len(labels), **measured,
                         seconds=round(time.perf_counter() - started, 1))
    log.info("built the intent classifier: %s", json.dumps(asdict(report)))
    return report
