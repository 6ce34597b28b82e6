"""Which models on disk a command can run on: help's examples, "all models" and the shell's completion ask here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from lqmf.base.encoders import EMBEDDING

# What a command needs of the models it names (agents/intent_table.py declares one per intent).
ANY = "any"  # any model on disk
GENERATES = "generates"  # a model that generates text (chat, benchmark, experiments)
EMBEDS = "embeds"  # a model that makes embeddings: an encoder first, a generator's pooled states after
VARIANT = "variant"  # a quantized variant whose source is on disk (fidelity is measured against it)
SOURCE = "source"  # an unquantized Hugging Face folder: every method quantizes from one
SERVED_GGUF = "served gguf"  # a GGUF model that generates: what llama-server serves and `tune` tunes
FLOAT_LEVELS = frozenset({"f16", "bf16", "f32"})
# Quick to load and run first, so that an example or "all models" costs little: quantized GGUF, float GGUF, then
# the in-process transformers formats (bitsandbytes is the slowest on a CPU).
FORMAT_ORDER = {"gguf": 0, "hf": 2, "gptq": 3, "bnb": 4}


@dataclass(frozen=True)
class Missing:
    """What an example says in place of a model when none on disk fits, and why."""

    placeholder: str
    why: str


MISSING = {
    ANY: Missing("<model>", "no model on disk: download ORG/NAME or import PATH first"),
    GENERATES: Missing("<model>", "no text-generating model on disk: download ORG/NAME first"),
    EMBEDS: Missing("<model>", "no model on disk makes embeddings: download one first"),
    VARIANT: Missing("<variant>", "no quantized variant with its source on disk: quantize a model first"),
    SOURCE: Missing("<hf-model>", "no unquantized Hugging Face folder on disk: download ORG/NAME first"),
    SERVED_GGUF: Missing("<gguf-model>", "no GGUF model on disk: quantize a model to gguf first"),
}


def _quick_first(record: Any) -> tuple:
    level = (record.level or "").lower()
    order = FORMAT_ORDER.get(record.format, 5) + (1 if record.format == "gguf" and level in FLOAT_LEVELS else 0)
    return (order, record.parameter_count or math.inf, record.name)


def _generates(record: Any) -> bool:
    return record.role != EMBEDDING


def _source(record: Any) -> bool:
    return record.format == "hf" and record.role != EMBEDDING


FITS: dict[str, Callable[[Any], bool]] = {
    ANY: lambda record: True,
    GENERATES: _generates,
    EMBEDS: lambda record: True,
    VARIANT: lambda record: _generates(record) and (record.level or "").lower() not in FLOAT_LEVELS
    and record.format != "hf",
    SOURCE: _source,
    SERVED_GGUF: lambda record: record.format == "gguf" and _generates(record),
}


@dataclass
class Pool:
    """The usable models on disk (remote endpoints aside: one that is down would fail the whole command)."""

    records: Sequence[Any]
    reference: Callable[[str], Optional[str]] = lambda name: None  # the source a variant was made from

    @classmethod
    def of(cls, records: Sequence[Any], reference: Callable[[str], Optional[str]] = lambda name: None) -> "Pool":
        """The usable local ones of discovery's records."""
        return cls([rec for rec in records if rec.usable and not rec.remote], reference)

    def fitting(self, fit: str) -> list[str]:
        """The names that fit, quickest first (for EMBEDS the encoders first; for VARIANT those whose source is
        on disk)."""
        chosen = sorted((rec for rec in self.records if FITS[fit](rec)), key=_quick_first)
        if fit == EMBEDS:
            chosen.sort(key=lambda rec: rec.role != EMBEDDING)  # stable: quickest first within each role
        names = [rec.name for rec in chosen]
        return [name for name in names if self.reference(name)] if fit == VARIANT else names

    def pair(self) -> list[str]:
        """Two models worth comparing: two variants of one source when there are, else the two quickest."""
        variants = self.fitting(VARIANT)
        for first in variants:
            same = [other for other in variants if other != first and self.reference(other) == self.reference(first)]
            if same:
                return [first, same[0]]
        return self.fitting(GENERATES)[:2]
