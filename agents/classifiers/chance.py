"""Is a classifier clearly better than chance? Its cross-validated rows against the chance rate.

Chance is the higher of the majority class's share of the scored rows (what always answering the
commonest label gets) and 1/k for k labels. The cross-validated accuracy gets a Wilson 95% interval
over the rows it scored (every training row is scored once, by the fold that held it out); a
classifier is clearly above chance when that interval's lower bound is. One that is not is still
saved and served, but every face shows why it should not be trusted: rows per label, class balance,
the interval, the chance rate and what to do.

The verdict's inputs are saved in the manifest (`chance`); classifiers saved before it was measured
are judged from their cross-validation confusion matrix, or reported as not measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
ENOUGH_PER_LABEL = 30  # rows per label below which adding rows is the first advice
METHOD = "Wilson 95% interval of the cross-validated accuracy over the rows it scored"


@dataclass(frozen=True)
class ChanceInputs:
    """What the verdict is computed from (saved in the manifest, so it survives a restart)."""

    data_rows: int  # rows in the training file
    data_counts: dict[str, int]  # rows per label in the training file
    cv_counts: dict[str, int]  # rows per label the cross-validation scored
    cv_correct: int  # of those, the rows it labelled right


@dataclass(frozen=True)
class ChanceVerdict:
    """Whether the cross-validated accuracy is clearly above chance, and the words that say why."""

    above_chance: Optional[bool]  # None: not measured
    reason: str  # the figures behind the verdict, in words
    warning: str = ""  # empty when the classifier is clearly above chance
    accuracy: Optional[float] = None
    interval: Optional[tuple[float, float]] = None
    chance: Optional[float] = None
    chance_rule: str = ""
    method: str = METHOD
    inputs: Optional[ChanceInputs] = None
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval else None
        return out

    def fields(self) -> dict[str, Any]:
        """The two fields every classifier result carries: above_chance and warning."""
        return {"above_chance": self.above_chance, "warning": self.warning}


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct/n."""
    if n <= 0:
        raise ValueError("a proportion of no rows has no interval")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_rate(counts: Mapping[str, int]) -> tuple[float, str]:
    """The chance rate of rows with these label counts, and which rule gave it (majority share or 1/k)."""
    n, k = sum(counts.values()), len(counts)
    label, most = max(sorted(counts.items()), key=lambda item: item[1])
    if most * k > n:  # unbalanced: always answering the commonest label beats guessing uniformly
        return most / n, f"the majority class's share: {label!r} is {most} of {n} rows"
    return 1 / k, f"1/{k}: {k} balanced labels"


def _per_label(counts: Mapping[str, int]) -> str:
    """'8 per label over 3 labels', or the range and the largest label when they differ."""
    low, high = min(counts.values()), max(counts.values())
    if low == high:
        return f"{low} per label over {len(counts)} labels"
    largest = max(sorted(counts), key=lambda label: counts[label])
    smallest = min(sorted(counts), key=lambda label: counts[label])
    return (f"{low}–{high} per label over {len(counts)} labels (fewest: {smallest!r}, most: {largest!r}, "
            f"{100 * high / sum(counts.values()):.0f}% of the rows)")


def judge(inputs: ChanceInputs) -> ChanceVerdict:
    """The verdict on a classifier's cross-validated rows."""
    n = sum(inputs.cv_counts.values())
    if n == 0 or len(inputs.cv_counts) < 2:
        return not_measured("its cross-validation scored no rows", inputs)
    accuracy = inputs.cv_correct / n
    low, high = wilson(inputs.cv_correct, n)
    chance, rule = chance_rate(inputs.cv_counts)
    counts = inputs.data_counts or inputs.cv_counts
    rows = inputs.data_rows or n
    reason = (f"{rows} rows, {_per_label(counts)}; cross-validated {accuracy:.2f} (95% {low:.2f}–{high:.2f} over "
              f"{n} rows) vs chance {chance:.2f} ({rule})")
    above = low > chance
    if above:
        return ChanceVerdict(True, reason, "", accuracy, (low, high), chance, rule, inputs=inputs)
    if min(counts.values()) < ENOUGH_PER_LABEL:
        advice = f"add rows, at least ~{ENOUGH_PER_LABEL} per label"
    else:
        advice = "check the labels, or train on another embedding model: this one may not separate them"
    warning = f"not clearly above chance: {reason}: {advice}"
    return ChanceVerdict(False, reason, warning, accuracy, (low, high), chance, rule, inputs=inputs, advice=advice)


def not_measured(why: str, inputs: Optional[ChanceInputs] = None) -> ChanceVerdict:
    """The verdict of a classifier whose accuracy against chance cannot be computed."""
    return ChanceVerdict(None, f"not measured ({why})",
                         f"accuracy against chance not measured ({why}): train it again to measure it", inputs=inputs)


def inputs_from_cv(data_counts: Mapping[str, int], labels: Sequence[str],
                   confusion: Sequence[Sequence[int]]) -> ChanceInputs:
    """The inputs from a cross-validation's pooled confusion matrix (rows: true labels in `labels` order)."""
    cv_counts = {str(label): int(sum(row)) for label, row in zip(labels, confusion, strict=True)}
    correct = int(sum(confusion[i][i] for i in range(len(labels))))
    counts = {str(k): int(v) for k, v in data_counts.items()}
    return ChanceInputs(data_rows=sum(counts.values()), data_counts=counts, cv_counts=cv_counts, cv_correct=correct)


def for_manifest(manifest: Any) -> ChanceVerdict:
    """The verdict of a saved classifier: from its saved inputs, else (saved before they were) its CV confusion."""
    saved = (getattr(manifest, "chance", None) or {}).get("inputs")
    if saved:
        try:
            return judge(ChanceInputs(**saved))
        except (TypeError, ValueError) as exc:
            return not_measured(f"its saved figures are unreadable: {exc}")
    cv = getattr(manifest, "cv", None) or {}
    labels, confusion = cv.get("labels") or getattr(manifest, "labels", None), cv.get("confusion_matrix")
    if not labels or not confusion:
        return not_measured("saved without its cross-validation's confusion matrix")
    try:
        inputs = inputs_from_cv((getattr(manifest, "data", None) or {}).get("counts") or {}, labels, confusion)
    except (TypeError, ValueError) as exc:
        return not_measured(f"its cross-validation figures are unreadable: {exc}")
    return judge(inputs)
