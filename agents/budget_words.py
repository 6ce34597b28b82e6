"""The shell's words for a quantization budget: the phrase in a quantize line, and a budget said back in words.

A line names a budget with a cue before a size ("fit 100 MB", "under 95 MB", "to 4 GiB of memory") or with a
KL divergence and a number ("kld 0.02", "the kl divergence stays under 0.02"). The phrase is normalized to what
agents.quantization.budget.target.parse_budget reads ("fit 100 MB", "fit 4 GB of RAM", "kld 0.02"); a size
without a cue ("smol-hf is 270 MB", "my laptop has 8 GB of RAM") is no budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from agents.quantization.budget.target import Budget, BudgetError, decimal_mb, parse_budget

__all__ = ["BudgetPhrase", "budget_phrase", "decimal_mb", "describe_budget", "describe_level", "SIZE_TOKEN"]

# How people write a unit -> how parse_budget reads it (decimal unless the "i" is written, as target.py says).
UNITS = {"kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB",
         "m": "MB", "g": "GB", "meg": "MB", "megs": "MB", "megabyte": "MB", "megabytes": "MB",
         "gig": "GB", "gigs": "GB", "gigabyte": "GB", "gigabytes": "GB", "mebibyte": "MiB", "mebibytes": "MiB",
         "gibibyte": "GiB", "gibibytes": "GiB"}
_WORD_UNIT = r"[kmgt]i?b|megs?|gigs?|megabytes?|gigabytes?|mebibytes?|gibibytes?"
_SIZE = rf"(?P<number>\d+(?:\.\d+)?)(?:\s*(?P<unit>{_WORD_UNIT})|(?P<letter>[mg]))\b"
# A one-word size with its unit spelled ("100MB", "4GiB"): a number, never a model's name ("8k" stays a word).
SIZE_TOKEN = re.compile(rf"\d+(?:\.\d+)?(?:{_WORD_UNIT})", re.I)
# The words before a size that make it a limit: without one a size is only mentioned.
_CUE = (r"(?:\bfit(?:s|ting)?(?:\s+(?:in|into|inside|within|under|below))?|\binto|\bunder|\bbelow|\bwithin|\bat\s+most"
        r"|\bno\s+(?:more|bigger|larger)\s+than|\b(?:smaller|less)\s+than|\bmax(?:imum)?|\bbudget(?:\s+of)?"
        r"|\b(?:down\s+)?to|<=?|≤)")
SIZE_BUDGET = re.compile(rf"{_CUE}\s+(?:about\s+|around\s+|roughly\s+)?{_SIZE}"
                         r"(?P<ram>\s+(?:of\s+)?(?:system\s+)?(?:ram|memory|vram)\b)?", re.I)
# "kld 0.02", "kl divergence of 0.02", "so the kl divergence stays under 0.02", "KLD <= 0.02".
KLD_BUDGET = re.compile(
    r"\b(?:kld|kl(?:[\s-]*divergence)?|kullback[\s-]*leibler(?:\s+divergence)?|divergence)"
    r"(?:\s+(?:stays?|staying|kept|keep|is|be|remains?|of|under|below|at|most|within|no|more|than|max(?:imum)?"
    r"|to|around|about|budget))*\s*(?:<=?|≤|=)?\s*(?P<number>\d+(?:\.\d+)?(?:e-?\d+)?|\.\d+)(?!\w|\.\d)", re.I)


@dataclass(frozen=True)
class BudgetPhrase:
    """A budget found in a line: the normalized phrase and where the words that said it are."""

    text: str  # what parse_budget reads: "fit 100 MB", "fit 4 GB of RAM", "kld 0.02"
    start: int
    end: int

    def said(self, line: str) -> str:
        """The words of the line that said it."""
        return line[self.start:self.end]


def budget_phrase(line: str) -> Optional[BudgetPhrase]:
    """The budget a quantize line names, normalized; None when it names none (a level's line, a size mentioned)."""
    kld = KLD_BUDGET.search(line)
    if kld:
        return BudgetPhrase(f"kld {kld.group('number')}", kld.start(), kld.end())
    size = SIZE_BUDGET.search(line)
    if size is None:
        return None
    unit = UNITS[(size.group("unit") or size.group("letter")).lower()]
    ram = " of RAM" if size.group("ram") else ""
    return BudgetPhrase(f"fit {size.group('number')} {unit}{ram}", size.start(), size.end())


def describe_budget(budget: Mapping[str, Any]) -> str:
    """A manifest's budget ({kind, value}) in words: 'file at most 100.0 MB (95.4 MiB)'; as stored when unreadable."""
    try:
        return Budget(str(budget.get("kind")), float(budget.get("value"))).describe()
    except (BudgetError, TypeError, ValueError):
        return ", ".join(f"{k} {v}" for k, v in budget.items())


def describe_level(level: str) -> str:
    """A budget plan's level (Budget.slug(): fit-100mb, ram-4000mb, kld-0.02) in words; as given when unreadable."""
    try:
        return parse_budget(level.replace("-", " ")).describe()
    except BudgetError:
        return level
