"""What the classifier calls return: a trained classifier, the list, a classification, a variant check.

The library (lqmf.api) returns these, the shell draws them (cli/render_classifiers.py) and --json prints
their to_dict().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lqmf.base.results import Result


@dataclass
class ClassifierTrained(Result):
    """A trained embedding classifier: its folder, manifest (metrics, embedding model, data) and history id."""

    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierList(Result):
    folder: str = ""
    classifiers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Classification(Result):
    """Labels and probabilities of texts by a classifier, with its embedding model and the latency."""

    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierCheckResult(Result):
    """A classifier checked on quantized variants' embeddings: one row per model, the report file."""

    report: dict[str, Any] = field(default_factory=dict)
