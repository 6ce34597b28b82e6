"""The brief's cheap response-quality HEURISTIC: length 0.3 + relevance 0.3 + coherence 0.4.

It looks at words only, never at meaning: a fluent non-answer that echoes the prompt's words gets
1.00 (tests/test_report_html.py shows one). There is nothing offline to validate it against — the
demo model answers no question correctly, and no labelled answers ship with LQMF — so it is kept
on request only: stored with every run in the history and printed by `--json`, but left out of the
shell's tables and the HTML report, which name fidelity (KL divergence, top-1 agreement and Δp
against the reference model) as the quality measure.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

WORD = re.compile(r"[A-Za-z0-9_]+")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these "
    "those what which who whom how why when where do does did can could should would will shall may might i you "
    "he she we they me my your our their please tell explain give write about into than then so not no yes".split()
)
# Word counts a useful answer usually falls in; shorter reads as a stub, longer as rambling.
SHORT, LONG = 5, 400


@dataclass(frozen=True)
class QualityHeuristic:
    """Scores in [0, max]; `total` in [0, 1]. A heuristic, not a measurement of correctness."""

    length: float  # max 0.3
    relevance: float  # max 0.3
    coherence: float  # max 0.4
    total: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _length(words: list[str]) -> float:
    n = len(words)
    if n == 0:
        return 0.0
    if n < SHORT:
        return 0.3 * n / SHORT
    if n > LONG:
        return max(0.1, 0.3 * LONG / n)
    return 0.3


def _relevance(prompt_words: list[str], words: list[str]) -> float:
    wanted = {w for w in prompt_words if w not in STOPWORDS and len(w) > 2}
    if not wanted:
        return 0.3 if words else 0.0  # nothing to be relevant to: do not punish
    found = len(wanted & set(words))
    # Half of the prompt's content words echoed is already a clearly on-topic answer.
    return 0.3 * min(1.0, found / (len(wanted) / 2))


def _coherence(words: list[str]) -> float:
    """Share of distinct word trigrams (bigrams / words for short answers): 1.0 means no loops."""
    if not words:
        return 0.0
    n = 3 if len(words) >= 6 else 2 if len(words) >= 3 else 1
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 0.4 * len(set(grams)) / len(grams)


def score(prompt: str, response: str) -> QualityHeuristic:
    """The heuristic score of one response to one prompt."""
    words = [w.lower() for w in WORD.findall(response)]
    prompt_words = [w.lower() for w in WORD.findall(prompt)]
    parts = _length(words), _relevance(prompt_words, words), _coherence(words)
    return QualityHeuristic(*(round(p, 4) for p in parts), total=round(sum(parts), 4))
