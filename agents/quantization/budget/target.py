"""What a person asks a budget search for: a file size, a RAM size (file plus context), or a KL divergence."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Optional

from lqmf.base.errors import LQMFError
from lqmf.base.units import format_bytes

SIZE = "size"
RAM = "ram"
KLD = "kld"
KINDS = (SIZE, RAM, KLD)
# Decimal units as file managers and the tables write them (105.5 MB = 105,500,000 bytes); binary
# units where the person writes the "i".
UNIT_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|[kmg]|b)\b", re.IGNORECASE)
_KLD = re.compile(r"\b(?:kld|kl(?:[- ]divergence)?)\s*(?:of|<=?|≤|=|under|below|at most)?\s*(\d*\.?\d+(?:e-?\d+)?)",
                  re.IGNORECASE)
_RAM = re.compile(r"\b(?:ram|memory)\b", re.IGNORECASE)
EXAMPLES = "fit 100 MB, fit 4 GB of RAM, kld 0.02"


class BudgetError(LQMFError):
    """A budget that cannot be read or cannot be met."""


@dataclass(frozen=True)
class Budget:
    """A target: at most `value` bytes of file (size) or of RAM with the context (ram), or at most `value` KLD."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BudgetError(f"unknown budget kind {self.kind!r}", f"one of {', '.join(KINDS)}")
        if not self.value > 0:
            raise BudgetError(f"a budget must be above zero, not {self.value:g}", f"e.g. {EXAMPLES}")

    def describe(self) -> str:
        """The budget as a person reads it: 'file at most 100.0 MB', 'KLD at most 0.02'."""
        if self.kind == KLD:
            return f"KLD at most {self.value:g}"
        what = "file" if self.kind == SIZE else "RAM (file and context)"
        return f"{what} at most {decimal_mb(self.value)} ({format_bytes(self.value)})"

    def slug(self) -> str:
        """A file-name part: fit-100mb, ram-4000mb, kld-0.02."""
        if self.kind == KLD:
            return f"kld-{self.value:g}"
        return f"{'fit' if self.kind == SIZE else 'ram'}-{self.value / 1e6:.4g}mb"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decimal_mb(n: float) -> str:
    """Bytes in decimal megabytes, as the issue's and llama.cpp's size tables print them."""
    return f"{n / 1e6:,.1f} MB"


def parse_budget(text: str) -> Budget:
    """'fit 100 MB' / '100MiB' -> size; 'fit 4 GB of RAM' -> ram; 'kld 0.02' -> kld. A clear error otherwise."""
    words = (text or "").strip()
    kld = _KLD.search(words)
    if kld:
        return Budget(KLD, float(kld.group(1)))
    size = _SIZE.search(words)
    if size:
        value = float(size.group(1)) * UNIT_BYTES[size.group(2).lower()]
        return Budget(RAM if _RAM.search(words) else SIZE, value)
    raise BudgetError(f"cannot read a budget from {text!r}", f"write a size or a KL divergence: {EXAMPLES}")


def budget_or_none(value: Optional[object]) -> Optional[Budget]:
    """A Budget from a Budget, a phrase, or None."""
    if value is None or isinstance(value, Budget):
        return value
    return parse_budget(str(value))
